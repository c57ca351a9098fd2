"""Who may moderate: the `moderator` and `arbiter` groups (migration 0003 makes them, with the
permissions their work in the admin needs). A superuser holds every role. Helpers: `has_role`,
the DRF permissions `IsModerator`/`IsArbiter` (anonymous: 401 with the API's error body; signed
in without the role: 403) and the page decorator `role_required` (anonymous: the sign-in page;
without the role: a 403 page)."""
from functools import wraps

from django.shortcuts import render
from rest_framework import permissions

from marketplace.api import APIError

MODERATOR = "moderator"
ARBITER = "arbiter"
ROLES = (MODERATOR, ARBITER)


def has_role(user, role: str) -> bool:
    if not (user and user.is_authenticated and user.is_active):
        return False
    if user.is_superuser:
        return True
    cache = getattr(user, "_moderation_roles", None)
    if cache is None:
        cache = user._moderation_roles = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    return role in cache


class HasRole(permissions.BasePermission):
    role = MODERATOR

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            raise APIError("not_signed_in", "Sign in with your wallet first.", status=401)
        if not has_role(request.user, self.role):
            raise APIError("forbidden", f"Only {self.role}s may do this.", status=403)
        return True


class IsModerator(HasRole):
    role = MODERATOR


class IsArbiter(HasRole):
    role = ARBITER


def role_required(role: str, title: str):
    """A page for holders of `role` only. Anonymous: the sign-in prompt (at this address, as the
    site's other pages do); signed in without the role: a 403 page."""
    def decorate(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return render(request, "web/sign_in_prompt.html", {"page_title": title, "audience": f"{role}s"})
            if not has_role(request.user, role):
                return render(request, "moderation/forbidden.html", {"page_title": title, "role": role}, status=403)
            return view(request, *args, **kwargs)
        return wrapped
    return decorate
