"""The gateway's calls skip the middleware that serves browsers.

Gateway callers are programs with a Bearer token: no session, cookie, CSRF token, flash message, login
throttle or static file is ever involved in a call, yet running those middlewares costs a sizeable share of
what the gateway adds to a provider's answer (bench/gateway.py measures it). Placed below
the middleware that sets the security headers, this one serves `/gateway/` requests itself: it resolves
the path, calls the gateway's view, and adds what the middleware below it would have added: the
Content-Security-Policy (every answer carries the site's headers) and a JSON answer's Content-Length.
"""

from collections.abc import Callable
from functools import cache

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, get_resolver

from core.unavailable import DATABASE_DOWN, database_unavailable_response, log_outage

PREFIX = "/gateway/"


@cache
def content_security_policies() -> dict[str, str]:
    """The site's policies, built once: gateway answers are JSON, so no nonce or per-view change applies."""
    policies = {HEADER: build_policy(), HEADER_REPORT_ONLY: build_policy(report_only=True)}
    return {header: policy for header, policy in policies.items() if policy}


class GatewayMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        # As Django wraps every middleware: an error becomes its logged 500 answer (handler500) right here,
        # so that answer gets the policy too.
        self.serve = convert_exception_to_response(self.call_view)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(PREFIX):
            return self.get_response(request)
        try:
            match = get_resolver().resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)  # the site's own 404, through the whole stack
        if match.app_name != "gateway":
            return self.get_response(request)
        request.resolver_match = match
        response = self.serve(request)
        for header, policy in content_security_policies().items():
            response.setdefault(header, policy)
        if not response.streaming and not response.has_header("Content-Length"):
            # As CommonMiddleware does for the site: a JSON answer goes out whole, not chunked.
            response["Content-Length"] = str(len(response.content))
        return response

    @staticmethod
    def call_view(request: HttpRequest) -> HttpResponse:
        match = request.resolver_match
        try:
            return match.func(request, *match.args, **match.kwargs)
        except DATABASE_DOWN as error:  # as DatabaseUnavailableMiddleware answers it for the other views
            log_outage(request, error)
            return database_unavailable_response(request)
