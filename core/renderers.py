"""The API's JSON renderer and content negotiation (REST_FRAMEWORK's DEFAULT_RENDERER_CLASSES and
DEFAULT_CONTENT_NEGOTIATION_CLASS): a module of its own, which DRF's views import while reading those settings."""

import orjson
from rest_framework import renderers
from rest_framework.negotiation import DefaultContentNegotiation


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer. A response whose data the view vouches holds only text, integers, booleans, None,
    lists and dicts (`response.plain_json`: a list read from values checks it) is written by orjson, which
    writes those byte for byte as Python's json module writes them with DRF's settings, in a tenth of the time
    (floats are where the two differ). Indented or ASCII-only JSON is DRF's own.
    """

    def render(self, data, accepted_media_type=None, renderer_context=None):
        renderer_context = renderer_context or {}
        if (data is not None and getattr(renderer_context.get("response"), "plain_json", False) and self.compact
                and not self.ensure_ascii and self.get_indent(accepted_media_type, renderer_context) is None):
            try:
                # As DRF does, U+2028 and U+2029 escaped: the JSON is also valid JavaScript.
                return orjson.dumps(data).replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
            except TypeError:  # an integer beyond 64 bits, a lone surrogate: DRF's answer (or error) is the rule
                pass
        return super().render(data, accepted_media_type, renderer_context)


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answered at once for the request almost every client sends: no `?format=` and an
    Accept header that is absent or `*/*`. DRF then picks the first renderer and its media type as is (no
    parameters to carry over), without parsing the header and ranking the renderers on every request."""

    def select_renderer(self, request, renderers, format_suffix=None):
        if (not format_suffix and renderers and ";" not in renderers[0].media_type
                and request.headers.get("accept", "*/*") == "*/*"
                and self.settings.URL_FORMAT_OVERRIDE not in request.query_params):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
