"""GET /downloads/<token>: the bought file itself (outside /api/: its body is the file)."""
from django.http import JsonResponse
from django.views.decorators.http import require_safe

from . import delivery


@require_safe
def download(request, token):
    try:
        return delivery.serve(request, token)
    except delivery.DeliveryError as exc:
        response = JsonResponse({"error": {"code": exc.code, "message": exc.message}}, status=exc.status)
        # Django would log the path (the token, valid for minutes) with every 4xx: say nothing.
        response._has_been_logged = True
        return response
