"""The API's parser (settings.REST_FRAMEWORK; the API takes JSON bodies only, uploads have their
own): a JSON body is refused with 413 past DATA_UPLOAD_MAX_MEMORY_SIZE, the limit Django applies
to form bodies. Recent DRF versions read a body through Django's request.body, which enforces
that limit (marketplace.api turns Django's refusal into BodyTooLarge); older ones read the stream
whole, so the parser stops at the limit itself. Imports nothing of the API, which loads it first."""
import io

from django.conf import settings
from rest_framework import exceptions, parsers


class BodyTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "body_too_large"

    def __init__(self):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        super().__init__(f"The request body is larger than the limit of {limit:,} bytes.")


def _declared_length(parser_context) -> int:
    request = (parser_context or {}).get("request")
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
    except ValueError:
        return 0


def _read_limited(stream, parser_context):
    """The body as a stream of at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes (refused beyond it,
    whatever Content-Length said)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None:
        return stream
    if _declared_length(parser_context) > limit:
        raise BodyTooLarge()
    body = stream.read(limit + 1)
    if len(body) > limit:
        raise BodyTooLarge()
    return io.BytesIO(body)


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        return super().parse(_read_limited(stream, parser_context), media_type, parser_context)
