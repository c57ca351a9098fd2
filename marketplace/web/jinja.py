"""The Jinja2 environment of the site's pages (frontend/jinja2/).

The pages are Jinja2 rather than Django templates for speed: the catalog page renders about
500 values per request, which took Django's engine ~6 ms and takes Jinja2 about a third of
that. Django's own templates (the admin, the API docs) stay on Django's engine. Autoescaping is
on (Django's Jinja2 backend sets it), and `csrf_input`/`csrf_token`/`request` are in every
page's context.
"""
from django.templatetags.static import static
from django.urls import reverse
from django.utils.dateformat import format as format_date
from django.utils.timezone import localtime
from jinja2 import ChainableUndefined, Environment


def capfirst(value) -> str:
    text = str(value)
    return text[:1].upper() + text[1:]


def date(value, fmt: str = "N j, Y") -> str:
    """Django's date filter (its format letters), in the current time zone."""
    if not value:
        return ""
    if getattr(value, "tzinfo", None) is not None:
        value = localtime(value)
    return format_date(value, fmt)


def pluralize(count, suffix: str = "s") -> str:
    """"" for 1, else the suffix; "y,ies" gives the singular and plural endings."""
    singular, _, plural = suffix.rpartition(",") if "," in suffix else ("", "", suffix)
    try:
        one = int(count) == 1
    except (TypeError, ValueError):
        one = len(count) == 1
    return singular if one else plural


def user_avatar_url(user) -> str | None:
    from marketplace.accounts.avatars import url

    return url(user)


def is_moderator(user) -> bool:
    from marketplace.accounts.roles import MODERATOR, has_role

    return has_role(user, MODERATOR)


def is_arbiter(user) -> bool:
    from marketplace.accounts.roles import ARBITER, has_role

    return has_role(user, ARBITER)


def short_address(address) -> str:
    """0x1234…abcd, as the header shows a wallet (wallet.js shortens it the same way)."""
    address = address or ""
    return f"{address[:6]}…{address[-4:]}" if len(address) > 12 else address


def environment(**options) -> Environment:
    # Like Django's templates, a missing value (or an attribute of one) renders as nothing.
    options.setdefault("undefined", ChainableUndefined)
    env = Environment(**options)
    env.globals.update(static=static, url=reverse, user_avatar_url=user_avatar_url, short_address=short_address,
                       is_moderator=is_moderator, is_arbiter=is_arbiter)
    env.filters.update(capfirst=capfirst, date=date, pluralize=pluralize)
    return env
