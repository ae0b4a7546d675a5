"""Which destinations a call tries, in which order, and which failures send it on to the next.

A call goes to one primary chosen by weight, then, on a failure the endpoint falls back on, to its fallbacks
in order. A destination that just failed with 429, 5xx, a timeout or a connection error is cooling down
(`Destination.cooling_until`, written by the call that saw it and read with the endpoint by every process):
it is tried after the others, not skipped outright, so a call never fails for want of trying.
"""

import math
import random
from datetime import datetime
from urllib.parse import quote

from django.conf import settings

from endpoints.models import Destination, Endpoint, FallbackOn, Route
from providers.errors import GatewayError

# Weighted choice of a primary; the split's test seeds it for a fixed sequence.
CHOOSER = random.Random()
MAX_COOLDOWN_SECONDS = 300.0
MESSAGE_PER_FAILURE = 240  # characters of each failed attempt's message in the all-failed error


def plan(endpoint: Endpoint, now: datetime) -> list[Route]:
    """The routes a call tries, in order: a primary chosen by weight, then the fallbacks; cooling ones last."""
    primaries, fallbacks = [], []
    for route in endpoint.routes:
        (primaries if route.role == Destination.Role.PRIMARY else fallbacks).append(route)
    if not primaries:
        return fallbacks
    if len(primaries) == 1:
        first = primaries[0]
    else:
        warm = [route for route in primaries if not route.cooling(now)] or primaries
        first = warm[0] if len(warm) == 1 else by_weight(warm)
    if not fallbacks:
        return [first]
    candidates = [first, *fallbacks]
    cooling = [route for route in candidates if route.cooling(now)]
    if not cooling:
        return candidates
    return [route for route in candidates if route not in cooling] + cooling


def by_weight(routes: list[Route]) -> Route:
    """One route, each as likely as its share of the weights: the pick `CHOOSER.choices(routes, weights)` makes
    from the same draw (so a seeded sequence is the same), without its lists and checks on every call."""
    point = CHOOSER.random() * sum(route.weight or 0 for route in routes)
    reached = 0
    for route in routes:
        reached += route.weight or 0
        if point < reached:
            return route
    return routes[-1]


def failure_class(error: GatewayError) -> str | None:
    """Which kind of failure this is, for the endpoint's `fallback_on`; None for a request the provider refused
    (400, 404, 422…), which no other destination would take either."""
    if error.status == 429:
        return FallbackOn.RATE_LIMITED
    if error.status == 504:
        return FallbackOn.TIMEOUT
    if error.status == 401 and error.code == "upstream_credentials_rejected":
        return FallbackOn.CREDENTIALS_REFUSED
    if error.status == 502 and error.upstream_status is not None and error.upstream_status >= 500:
        return FallbackOn.SERVER_ERROR
    if error.status in (502, 503):
        # No usable answer (unreachable, broken, a redirect), or the connection's secrets cannot be read.
        return FallbackOn.CONNECTION_ERROR
    return None


def cooldown_seconds(error: GatewayError) -> float | None:
    """How long to skip a destination after this failure, or None when the failure says nothing about it."""
    kind = failure_class(error)
    if kind == FallbackOn.RATE_LIMITED:
        try:
            asked = float(error.retry_after) if error.retry_after is not None else None
        except ValueError:
            asked = None
        seconds = asked if asked is not None and math.isfinite(asked) and asked > 0 else settings.GATEWAY_COOLDOWN_SECONDS
        return min(seconds, MAX_COOLDOWN_SECONDS)
    if kind in (FallbackOn.SERVER_ERROR, FallbackOn.TIMEOUT, FallbackOn.CONNECTION_ERROR):
        return settings.GATEWAY_COOLDOWN_SECONDS
    return None


def header_value(label: str) -> str:
    """A destination's `<connection>/<model>` as a header can carry it (non-ASCII percent-encoded)."""
    return quote(label, safe=" /:@!$&'()*+,;=-._~")


def route_headers(route: Route, attempts: int) -> dict[str, str]:
    return {"x-llmc-destination": header_value(route.label), "x-llmc-attempts": str(attempts)}


def all_failed(failures: list[tuple[Route, GatewayError]]) -> GatewayError:
    """The answer when the last attempt failed: that failure's status and code, and a message naming every
    destination tried and why it failed (each message already free of its connection's secrets)."""
    route, last = failures[-1]
    if len(failures) == 1:
        error = last
    else:
        reasons = "; ".join(
            f"{r.label}: HTTP {e.status} {e.code}: {trim(e.message)}" for r, e in failures
        )
        error = GatewayError(
            last.status, last.type, last.code, f"Tried {len(failures)} destinations, none answered: {reasons}",
            retry_after=last.retry_after, upstream_status=last.upstream_status, headers=dict(last.extra_headers),
        )
    error.extra_headers.update(route_headers(route, len(failures)))
    return error


def trim(message: str) -> str:
    return message if len(message) <= MESSAGE_PER_FAILURE else message[:MESSAGE_PER_FAILURE].rstrip() + "…"


def deadline_passed(endpoint: Endpoint) -> GatewayError:
    return GatewayError(
        504, "timeout_error", "upstream_timeout",
        f"Endpoint '{endpoint.name}' found no answer within its deadline of {endpoint.deadline_seconds} seconds.",
    )
