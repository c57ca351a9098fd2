"""API conventions shared by every app: one error body for every 4xx and 5xx under /api/,
strict input fields, and an OpenAPI schema that lists every status an operation can answer.

    {"error": {"code": "not_found", "message": "Not found.", "fields": {...}}}
"""
from http import HTTPStatus
import re

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.validators import RegexValidator
from django.db import models
from django.http import Http404, JsonResponse
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import exceptions, permissions, serializers
from rest_framework.views import exception_handler as drf_exception_handler

API_PREFIX = "/api/"


class APIError(exceptions.APIException):
    """A refusal with a stable code and a message for people."""

    def __init__(self, code, message, status=400):
        self.status_code = status
        super().__init__(detail=message, code=code)


class Refused(Exception):
    """A service's refusal (the moderation console's and the operator actions' retries): a stable
    `code`, a `message` for people, the HTTP `status`, and the input `field` it is about (None:
    the request as a whole). An API view raises `refusal(exc)`; a page shows the message."""

    default_status = 409

    def __init__(self, code: str, message: str, status: int | None = None, field: str | None = None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        self.status = self.default_status if status is None else status


def refusal(exc: Refused) -> exceptions.APIException:
    """A Refused as the API answers it: a 400 about one input as that field's message, anything
    else as a coded error."""
    if exc.field and exc.status == 400:
        return exceptions.ValidationError({exc.field: [exc.message]})
    return APIError(exc.code, exc.message, status=exc.status)


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):  # Django refusing a body DRF asked it for
        from marketplace.limits.parsers import BodyTooLarge

        exc = BodyTooLarge()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
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


# Errors that DRF never sees ---------------------------------------------------------------------

ERROR_CODES = {
    400: "bad_request", 401: "not_signed_in", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    406: "not_acceptable", 413: "too_large", 415: "unsupported_media_type", 429: "throttled",
    500: "server_error", 502: "bad_gateway", 503: "unavailable", 504: "gateway_timeout",
}
PRESERVED_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Vary", "Cache-Control")


def error_response(status: int, message: str, code: str | None = None) -> JsonResponse:
    return JsonResponse({"error": {"code": code or ERROR_CODES.get(status, "error"), "message": message}},
                        status=status)


def _is_json(response) -> bool:
    content_type = response.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


class APIErrorMiddleware:
    """Under /api/, an error response that is not already the API's JSON body becomes one: an
    unknown path, a method a non-DRF view refuses, Django's host and CSRF checks, an unhandled
    exception (Django has logged it by then), all also with DEBUG on, whose HTML pages would
    otherwise show a traceback and the settings. Placed first, so it sees every other
    middleware's answer."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code < 400 or not request.path_info.startswith(API_PREFIX) or _is_json(response):
            return response
        status = response.status_code
        if status == 404:
            message = "No such API endpoint or object. The API's paths are listed at /api/v1/schema."
        elif status >= 500:
            message = "The server failed to answer this request; it has been logged. Try again later."
        else:
            message = HTTPStatus(status).phrase + "." if status in HTTPStatus._value2member_map_ else "Refused."
        replacement = error_response(status, message)
        for header in PRESERVED_HEADERS:
            if header in response:
                replacement[header] = response[header]
        replacement.cookies = response.cookies
        return replacement


# Strict input fields ----------------------------------------------------------------------------


# Text as the schema states it (a JSON Schema `pattern`), so that what the schema accepts the API
# accepts and what it refuses the API refuses: a line has no control characters, text no NUL
# (PostgreSQL cannot store it), and a required value is more than spaces. Values are taken as
# sent, not trimmed: trimming would accept a value the schema's maxLength refuses.
# (An empty value is no match: where it is allowed, the schema says so apart, as drf-spectacular
# writes a blank-or-pattern `oneOf` that must not match "" twice.)
LINE = r"^[^\x00-\x1f\x7f]+$"
LINE_NOT_BLANK = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"
TEXT = r"^[^\x00]+$"
TEXT_NOT_BLANK = r"^[^\x00]*[^\x00-\x20\x7f][^\x00]*$"


class StrictCharField(serializers.CharField):
    """A single line of text, and only a string: DRF's CharField also takes numbers and turns
    them into text, which the schema (type: string) does not allow."""

    patterns = (LINE, LINE_NOT_BLANK)
    refusal = "Use a single line of text without control characters."

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        if self.read_only:  # the patterns state what the API takes, not what it answers
            return
        pattern = self.patterns[0] if self.allow_blank else self.patterns[1]
        self.validators.append(RegexValidator(pattern, message=self.refusal if self.allow_blank
                                              else self.refusal + " It may not be only spaces."))

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictTextField(StrictCharField):
    """Text of any number of lines (Markdown, a signed message)."""

    patterns = (TEXT, TEXT_NOT_BLANK)
    refusal = "Text may not contain NUL characters."


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only: DRF's BooleanField also takes 0, 1, "yes", "off" and the like,
    which the schema (type: boolean) does not allow."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictRegexField(serializers.RegexField):
    def __init__(self, regex, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(regex, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class AmountField(serializers.Field):
    """A token amount in base units: a string of decimal digits (amounts go past what a JSON
    number holds exactly), no leading zero, from 1 to `maximum()`; validated to an int. The schema
    states the bound as a pattern (see decimal_at_most_pattern), so "1.9", "1e9", "-1" and "0"
    are refused by the schema and by the API alike. `maximum` is called when first needed, not
    at import."""

    default_error_messages = {
        "invalid": "Give the amount in token base units as whole digits, from 1 to {maximum} "
                   '("25000000" is 25 USDC).',
    }

    def __init__(self, *, maximum, **kwargs):
        self.maximum = maximum
        super().__init__(**kwargs)

    def pattern(self) -> str:
        return decimal_at_most_pattern(self.maximum())

    def to_internal_value(self, data):
        if not isinstance(data, str) or not re.fullmatch(self.pattern(), data):
            self.fail("invalid", maximum=self.maximum())
        return int(data)

    def to_representation(self, value):
        return str(value)


class AmountFieldSchema(OpenApiSerializerFieldExtension):
    target_class = AmountField

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "pattern": self.target.pattern(), "example": "25000000"}


class StrictModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer whose text fields take strings only (see StrictCharField)."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictTextField,
    }


def decimal_at_most_pattern(maximum: int) -> str:
    """A regular expression matching exactly the decimal integers 1..`maximum`, without leading
    zeros, so that a JSON Schema `pattern` can state a bound past what JSON numbers hold (prices
    go up to 2^88 - 1).

    Numbers with fewer digits than `maximum` all fit; one with as many digits fits when, at the
    first digit where it differs from `maximum`, its digit is smaller."""
    digits = str(maximum)
    if maximum < 1:
        raise ValueError("maximum must be at least 1")
    width = len(digits)
    branches = []
    if width > 1:
        branches.append(f"[1-9][0-9]{{0,{width - 2}}}" if width > 2 else "[1-9]")
    for i, digit in enumerate(digits):
        d = int(digit)
        low = 1 if i == 0 else 0
        if d > low:
            rest = width - i - 1
            top = d - 1
            span = str(low) if top == low else f"[{low}-{top}]"
            branches.append(digits[:i] + span + (f"[0-9]{{{rest}}}" if rest else ""))
    branches.append(digits)
    return "^(?:" + "|".join(branches) + ")$"


# The schema -------------------------------------------------------------------------------------

ErrorBody = inline_serializer(
    "Error",
    {"error": inline_serializer("ErrorDetail", {
        "code": serializers.CharField(),
        "message": serializers.CharField(),
        "fields": serializers.DictField(required=False),
    })},
)


# The 202 of an endpoint that waits for a transaction's confirmations (chain.nudge).
ConfirmationsWaiting = inline_serializer("ConfirmationsWaiting", {
    "confirmations": serializers.IntegerField(
        help_text="Blocks on top of the transaction's, its own included"),
    "needed": serializers.IntegerField(
        help_text="Blocks the server waits for (CHAIN_CONFIRMATIONS + 1)"),
})


def errors(*statuses):
    """OpenAPI responses for the error statuses an endpoint can answer with."""
    return {status: OpenApiResponse(ErrorBody, description="See error.code and error.message") for status in statuses}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema, plus the error statuses that every operation of a kind can answer,
    whether or not its view declared them: 400 for invalid input, 403 for a missing sign-in or
    CSRF token, 404 for an unknown object in the path, 415 for a body of another media type,
    429 for a throttled view. (Each view still declares its own statuses: 409, 413, 503.)"""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        # A view whose body must name something (ListingUpdateRequest: a price or a payout) says
        # so; drf-spectacular only requires a body when one of its fields is required.
        if "requestBody" in operation and getattr(self.view, "request_body_required", False):
            operation["requestBody"]["required"] = True
        responses = operation["responses"]
        for status in sorted(self._implied_error_statuses(operation)):
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(errors(status)[status], str(status))
        return operation

    def _implied_error_statuses(self, operation) -> set[int]:
        view, method = self.view, self.method
        statuses = set()
        if "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", [])):
            statuses.add(400)
        if "requestBody" in operation:
            statuses.add(415)
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            statuses.add(404)
        needs_sign_in = any(isinstance(p, permissions.IsAuthenticated) for p in view.get_permissions())
        # SessionAuthentication checks the CSRF token of a signed-in session's unsafe requests.
        csrf_checked = method not in ("GET", "HEAD", "OPTIONS") and bool(view.get_authenticators())
        if needs_sign_in or csrf_checked:
            statuses.add(403)
        if view.get_throttles():
            statuses.add(429)
        return statuses
