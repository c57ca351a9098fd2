"""PLACEHOLDER, this branch only (wt-d): the paid URL's name ("paid-download") so that the dataset
API and the discovery list can build it before the paid URL itself is merged. Drop this module
and its route in marketplace/urls.py when the real view lands."""
from django.http import JsonResponse
from django.views.decorators.http import require_safe


@require_safe
def paid_download(request, listing_id):
    return JsonResponse({"error": {"code": "not_implemented", "message": "The paid URL is not built in this "
                                   "branch yet."}}, status=501)
