"""The reads every signed-in request makes through prepared statements (marketplace/prepared.py):
the session (accounts/sessions.py) and the user with their roles (accounts/backends.py), against
the real PostgreSQL. They must refuse exactly what Django's own reads refused."""
from datetime import timedelta

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.db import transaction
from django.test import Client
from django.utils import timezone
import pytest

from marketplace import prepared
from marketplace.accounts.models import User
from marketplace.accounts.roles import MODERATOR
from marketplace.accounts.sessions import SessionStore

pytestmark = pytest.mark.django_db


def signed_in(user, backend="marketplace.accounts.backends.UserBackend") -> Client:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = backend
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    client = Client()
    client.cookies["sessionid"] = session.session_key
    return client


@pytest.fixture
def person():
    return User.objects.create_user("reader", address="0x" + "12" * 20)


def test_a_session_signs_its_holder_in_and_an_expired_one_does_not(person):
    client = signed_in(person)
    assert client.get("/api/v1/auth/me").status_code == 200
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/v1/auth/me").status_code == 401


def test_an_unknown_session_key_signs_nobody_in():
    client = Client()
    client.cookies["sessionid"] = "x" * 32
    assert client.get("/api/v1/auth/me").status_code == 401


def test_a_session_made_before_names_django_s_model_backend_and_still_signs_in(person):
    assert signed_in(person, "django.contrib.auth.backends.ModelBackend").get("/api/v1/auth/me").status_code == 200


def test_a_deactivated_user_or_a_changed_password_signs_the_session_out(person):
    client = signed_in(person)
    User.objects.filter(pk=person.pk).update(is_active=False)
    assert client.get("/api/v1/auth/me").status_code == 401
    User.objects.filter(pk=person.pk).update(is_active=True)
    assert client.get("/api/v1/auth/me").status_code == 200
    person.set_password("another secret")
    person.save()
    assert client.get("/api/v1/auth/me").status_code == 401


def test_a_role_granted_or_taken_counts_from_the_next_request(person):
    client = signed_in(person)
    assert client.get("/api/v1/moderation/queue").status_code == 403
    Group.objects.get(name=MODERATOR).user_set.add(person)
    assert client.get("/api/v1/moderation/queue").status_code == 200
    Group.objects.get(name=MODERATOR).user_set.remove(person)
    assert client.get("/api/v1/moderation/queue").status_code == 403


def test_a_prepared_read_sees_its_transaction_s_own_writes(person):
    sql = "SELECT username FROM accounts_user WHERE id = %(id)s"
    with transaction.atomic():
        User.objects.filter(pk=person.pk).update(username="renamed")
        assert prepared.rows(sql, {"id": person.pk}) == [{"username": "renamed"}]
        transaction.set_rollback(True)
    assert prepared.rows(sql, {"id": person.pk}) == [{"username": "reader"}]


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_dropped_is_opened_again_for_the_next_request(person):
    """Web threads keep their connection (DATABASE_CONN_MAX_AGE): after a database restart the
    next request's prepared reads open a new one, as Django's own cursors do, not a 500."""
    from django.db import connection, connections

    client = signed_in(person)
    assert client.get("/api/v1/auth/me").status_code == 200
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    connection.health_check_done = False  # what the start of a request does (close_old_connections)
    assert client.get("/api/v1/auth/me").status_code == 200
