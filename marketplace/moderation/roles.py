"""Who may moderate: the `moderator` and `arbiter` groups, with the permissions their work in the
admin needs (`ensure_groups`: run by migration 0003, and after every migrate or flush, so a test
database emptied by a transactional test has them again). A superuser holds every role.

The check itself (`has_role`) and the DRF permissions `IsModerator`/`IsArbiter` (anonymous: 401
with the API's error body; signed in without the role: 403) are in accounts/roles.py, so that the
catalog's review endpoints check the same roles without importing this app. Here: the groups and
the pages' decorator `role_required` (anonymous: the sign-in page; without the role: a 403 page).
"""
from functools import wraps

from django.shortcuts import render

from marketplace.accounts.roles import ARBITER, MODERATOR, has_role

# What each role may do in the admin (until the moderation console does all of it): moderators
# review datasets and decide contributor flags, arbiters resolve disputes; both read the audit
# log. (Being staff is still what lets a person into the admin at all.)
ROLE_PERMISSIONS = {
    MODERATOR: [
        ("catalog", "view_dataset"), ("catalog", "change_dataset"),
        ("catalog", "view_datasetrevision"), ("catalog", "change_datasetrevision"),
        ("catalog", "view_listing"),
        ("rewards", "view_flag"), ("rewards", "change_flag"), ("rewards", "view_heldamount"),
        ("moderation", "view_auditentry"),
    ],
    ARBITER: [
        ("orders", "view_order"), ("orders", "resolve_dispute"), ("orders", "view_disputestatement"),
        ("orders", "view_download"), ("orders", "view_creditentry"),
        ("moderation", "view_auditentry"),
    ],
}


def ensure_groups(Group, Permission) -> None:
    """Make the role groups and give them their permissions (the models are passed in, so that a
    migration can give its historical ones). Idempotent; a permission not made yet is skipped."""
    for name, wanted in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in wanted:
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if permission is not None:
                group.permissions.add(permission)


def ensure_groups_after_migrate(sender, **kwargs):
    from django.contrib.auth.models import Group, Permission

    ensure_groups(Group, Permission)


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
