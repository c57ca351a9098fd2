"""API conventions shared by every app: one error body for every 4xx and 5xx.

    {"error": {"code": "not_found", "message": "Not found.", "fields": {...}}}
"""
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.views import exception_handler as drf_exception_handler


class APIError(exceptions.APIException):
    """A refusal with a stable code and a message for people."""

    def __init__(self, code, message, status=400):
        self.status_code = status
        super().__init__(detail=message, code=code)


def exception_handler(exc, context):
    if isinstance(exc, (RequestDataTooBig, TooManyFieldsSent)):  # Django refusing a body DRF asked it for
        from marketplace.limits.parsers import BodyTooLarge, TooManyFields

        exc = BodyTooLarge() if isinstance(exc, RequestDataTooBig) else TooManyFields()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    error = {"code": getattr(exc, "default_code", "error"), "message": ""}
    if isinstance(exc, exceptions.ValidationError):
        error["code"] = "invalid"
        error["message"] = "Some fields are invalid."
        error["fields"] = detail if isinstance(detail, dict) else {"non_field_errors": detail}
    elif isinstance(exc, exceptions.NotAuthenticated):
        error.update(code="not_signed_in", message="Sign in with your wallet first.")
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        error["code"] = codes if isinstance(codes, str) else error["code"]
        error["message"] = str(detail.get("detail", detail)) if isinstance(detail, dict) else str(detail)
    response.data = {"error": error}
    return response


ErrorBody = inline_serializer(
    "Error",
    {"error": inline_serializer("ErrorDetail", {
        "code": serializers.CharField(),
        "message": serializers.CharField(),
        "fields": serializers.DictField(required=False),
    })},
)


def errors(*statuses):
    """OpenAPI responses for the error statuses an endpoint can answer with."""
    return {status: OpenApiResponse(ErrorBody, description="See error.code and error.message") for status in statuses}
