"""Settings helpers: environment parsing and the broker URL derived from the database."""
from django.core.exceptions import ImproperlyConfigured
import pytest

from marketplace.env import env_bool, env_int, sqlalchemy_url


def test_env_bool_accepts_common_spellings_and_rejects_others(monkeypatch):
    monkeypatch.setenv("FLAG", "yes")
    assert env_bool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "0")
    assert env_bool("FLAG", True) is False
    monkeypatch.delenv("FLAG")
    assert env_bool("FLAG", True) is True
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG must be 1 or 0"):
        env_bool("FLAG", False)


def test_env_int_names_the_variable(monkeypatch):
    monkeypatch.setenv("N", "x")
    with pytest.raises(ImproperlyConfigured, match="N must be an integer"):
        env_int("N", 1)


def test_sqlalchemy_url_for_a_unix_socket_and_for_tcp():
    socket_db = {"USER": "postgres", "HOST": "/srv/pg data", "NAME": "marketplace", "PORT": ""}
    assert sqlalchemy_url(socket_db) == "postgresql+psycopg://postgres@/marketplace?host=%2Fsrv%2Fpg+data"
    tcp_db = {"USER": "app", "PASSWORD": "p@ss", "HOST": "db", "PORT": "5432", "NAME": "m"}
    assert sqlalchemy_url(tcp_db) == "postgresql+psycopg://app:p%40ss@db:5432/m"
