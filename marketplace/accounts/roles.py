"""The moderation roles as the lower layers check them: membership of the `moderator` or `arbiter`
group (a superuser holds every role), and DRF permissions for an API open to one role (anonymous:
401 with the API's error body; signed in without the role: 403). The groups, their permissions and
the pages' decorator are the moderation app's (`moderation/roles.py`); here so that the catalog's
review endpoints check the same roles without importing moderation."""
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
    held = getattr(user, "_moderation_roles", None)
    if held is None:  # one query a request, whatever the number of checks
        held = user._moderation_roles = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    return role in held


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
