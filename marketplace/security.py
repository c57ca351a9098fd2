"""The Content-Security-Policy of every response: scripts, styles, images and connections come
from this site only, and nothing inline runs (the API docs use drf-spectacular's split Swagger
view, whose start-up script is a file too). A view that sets its own policy keeps it (avatars
forbid everything)."""
from django.conf import settings


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = settings.CONTENT_SECURITY_POLICY

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response
