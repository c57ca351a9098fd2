"""Notifications by e-mail: off by default (nothing queued), and with NOTIFY_BY_EMAIL on, queued
through the outbox in the deciding transaction and sent by the task with Django's mail settings
(the locmem backend here); a notifier of a closed notice is written to as well."""
from django.core import mail
import pytest

from marketplace.accounts.models import User
from marketplace.moderation import tasks
from marketplace.moderation.notifications import email, notify
from marketplace.outbox.models import OutboxMessage

pytestmark = pytest.mark.django_db


@pytest.fixture
def mailbox(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://data.example"
    return mail.outbox


def sent(task="moderation.send_email"):
    return list(OutboxMessage.objects.filter(task=task).values_list("args", flat=True))


def test_no_email_is_queued_by_default(mailbox):
    person = User.objects.create_user("ann", email="ann@example.org")
    notify(person, kind="dataset.reject", text="Rejected.", link="/me/audit")
    assert sent() == [] and mailbox == []


def test_with_email_on_a_notification_is_mailed_with_its_link(mailbox, settings):
    settings.NOTIFY_BY_EMAIL = True
    person = User.objects.create_user("ann", email="ann@example.org")
    nobody = User.objects.create_user("bob")  # no address: the site only
    notify(person, kind="dataset.reject", text="Your dataset was rejected.", link="/me/audit")
    notify(nobody, kind="dataset.reject", text="Yours too.")
    (args,) = sent()
    assert args[0] == "ann@example.org" and args[2].endswith("https://data.example/me/audit")
    tasks.send_email(*args)
    assert [m.to for m in mailbox] == [["ann@example.org"]]
    assert "Your dataset was rejected." in mailbox[0].body and mailbox[0].subject.startswith("Datamarket")


def test_a_notifier_is_written_to_only_with_email_on(mailbox, settings):
    assert email("ana@example.org", text="Your notice was decided.") is False
    settings.NOTIFY_BY_EMAIL = True
    assert email("ana@example.org", text="Your notice was decided.") is True
    assert sent()[0][:1] == ["ana@example.org"]
