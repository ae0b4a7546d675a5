"""Prometheus metrics of the gateway's calls, added up across the server's worker processes.

Under gunicorn each worker writes its counts to files in PROMETHEUS_MULTIPROC_DIR (config/gunicorn.py sets it
up and empties it at start), and a scrape of any worker reads them all (prometheus_client's multiprocess mode),
so several workers add up. Without that directory (a single process) the counts live in this process.
The counts are taken by the usage writer thread from the calls it writes, never on the call's path.
Each connection's key age is read from the database at scrape time.
"""

import os

from django.apps import apps
from django.conf import settings
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from .calls import Call

LATENCY_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

CALLS = Counter("llmc_gateway_calls", "Gateway calls, by endpoint, provider and HTTP status.",
                ["endpoint", "provider", "status"])
ERRORS = Counter("llmc_gateway_errors", "Gateway calls that failed, by endpoint, provider and error code.",
                 ["endpoint", "provider", "code"])
LATENCY = Histogram("llmc_gateway_call_duration_seconds", "Time from a call's arrival to its last byte.",
                    ["endpoint", "provider"], buckets=LATENCY_SECONDS)
FIRST_BYTE = Histogram("llmc_gateway_time_to_first_byte_seconds", "Streams: time to the provider's first chunk.",
                       ["endpoint", "provider"], buckets=LATENCY_SECONDS)
TOKENS = Counter("llmc_gateway_tokens", "Tokens the providers reported, by endpoint, provider and kind.",
                 ["endpoint", "provider", "kind"])
# Labelled so that nothing is created at import: a management command writes no file to the multiprocess directory.
DROPPED = Counter("llmc_usage_dropped", "Calls not recorded, by reason (the usage buffer was full).", ["reason"])


def observe(calls: list[Call], dropped: int) -> None:
    """Count a batch of calls (in the writer thread)."""
    for call in calls:
        endpoint, provider = call.endpoint, call.provider
        CALLS.labels(endpoint, provider, str(call.status)).inc()
        if call.failed:
            ERRORS.labels(endpoint, provider, call.error or str(call.status)).inc()
        LATENCY.labels(endpoint, provider).observe(call.latency_ms / 1000)
        if call.ttfb_ms is not None:
            FIRST_BYTE.labels(endpoint, provider).observe(call.ttfb_ms / 1000)
        if call.prompt_tokens:
            TOKENS.labels(endpoint, provider, "prompt").inc(call.prompt_tokens)
        if call.completion_tokens:
            TOKENS.labels(endpoint, provider, "completion").inc(call.completion_tokens)
    if dropped:
        DROPPED.labels("buffer_full").inc(dropped)


class KeyAges:
    """`llmc_connection_key_age_seconds`: how long ago each connection's secrets were last set."""

    def collect(self):
        family = GaugeMetricFamily("llmc_connection_key_age_seconds",
                                   "Seconds since each connection's secrets were set or last rotated.",
                                   labels=["connection", "provider"])
        now = timezone.now()
        Connection = apps.get_model(settings.USAGE_SUBJECTS["connection"])
        for name, provider, updated, created in Connection.objects.order_by("name").values_list(
                "name", "provider", "secrets_updated_at", "created_at"):
            family.add_metric([name, provider], (now - (updated or created)).total_seconds())
        yield family


def exposition() -> tuple[bytes, str]:
    """The metrics text of every worker (or of this process) and the connections' key ages."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(ProcessMetrics())
    registry.register(KeyAges())
    return generate_latest(registry), CONTENT_TYPE_LATEST


class ProcessMetrics:
    """This process's own counts (the default registry's), when there is no multiprocess directory."""

    def collect(self):
        yield from REGISTRY.collect()
