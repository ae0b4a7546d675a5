"""Request bodies too large for their surface: a 413 in that surface's shape, before anything reads them.

The API takes at most MAX_BODY_BYTES (its largest valid request, a few 16 KiB secrets, is far smaller) and
answers its JSON `{"detail": ...}`; pages and the admin take what Django's DATA_UPLOAD_MAX_MEMORY_SIZE allows
and answer a plain page. Without this, a body over Django's limit surfaced as RequestDataTooBig wherever it
was first read (DRF, the CSRF check, a form) and became Django's HTML 400 page and a logged traceback.
`/gateway/` never gets here: its middleware answers it, with its own limit (gateway/views.py).

Imports nothing of DRF, so the middleware loads before the URLs (which import the API's views) do.
"""

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

MAX_BODY_BYTES = 1024 * 1024
API_TOO_LARGE = f"Request body too large: at most {MAX_BODY_BYTES} bytes."
BAD_LENGTH = "The Content-Length header is not a number of bytes."


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def body_limit(request: HttpRequest) -> int | None:
    """The most bytes a request to this surface may send (None: no limit)."""
    return MAX_BODY_BYTES if is_api(request) else settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def too_large_response(request: HttpRequest) -> HttpResponse:
    if is_api(request):
        return JsonResponse({"detail": API_TOO_LARGE}, status=413)
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    message = f"The form sent more than {limit} bytes, more than any page here takes."
    # Rendered without a request context, as the outage page is: nothing of the session is needed to say this.
    return HttpResponse(loader.render_to_string("413.html", {"message": message}), status=413)


def bad_length_response(request: HttpRequest) -> HttpResponse:
    if is_api(request):
        return JsonResponse({"detail": BAD_LENGTH}, status=400)
    return HttpResponse(BAD_LENGTH, status=400, content_type="text/plain; charset=utf-8")


class BodyLimitMiddleware:
    """Refuses a body whose declared length is over its surface's limit; a body found too large while a view
    reads it (RequestDataTooBig) gets the same answer."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "CONTENT_LENGTH" not in request.META and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self.sized(request)
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if not declared.isascii() or not declared.isdigit():
            return bad_length_response(request)
        limit = body_limit(request)
        if limit is not None and int(declared) > limit:
            return too_large_response(request)
        return self.get_response(request)

    def sized(self, request: HttpRequest) -> HttpResponse:
        """A chunked body (no Content-Length; the server has it whole, bounded by the site, config/asgi.py):
        measured here, so that the API's parser, which goes by the declared length, reads it."""
        limit = body_limit(request)
        body = request.body
        if limit is not None and len(body) > limit:
            return too_large_response(request)
        request.META["CONTENT_LENGTH"] = str(len(body))
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            return too_large_response(request)
        return None
