"""Benchmark: every settings and API surface at growing sizes, on SQLite and PostgreSQL side by side. Not a test.

For each database (a throwaway SQLite file, and --database-url when given) a child process serves the app as
`make run` does (bench/served.py) and, at each size of --sizes (connections x endpoints, seeded through the
ORM so secrets are encrypted as stored), times each surface over HTTP on one keep-alive client, interleaved
in rounds: the LLM Connections and Endpoints pages (logged in), `GET /api/v1/connections/` and
`GET /api/v1/endpoints/` at 50 and at 500 rows a page, and create and update of a connection through the page and
the API. It prints p50/p99 of the HTTP latency
(which bounds the server time from above), the server's CPU ms per request (from /proc: robust to other
load on the machine), rows/s, and the queries of each request counted in-process with the Django test
client and CaptureQueriesContext (same settings, same database). With --report it also runs
bench/gateway.py (and --rotation: bench/rotation.py), writes the Markdown report and a plot of latency
against row count (matplotlib, requirements-bench.txt) next to it.

    .venv/bin/python bench/surfaces.py [--sizes 200x1000,2000x10000] [--database-url postgres://...]
                                       [--report docs/benchmarks.md] [--rotation]
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench.*` and the project's apps

from bench.gateway import cpu_seconds, free_port, percentile  # noqa: E402
from bench.lean_client import LeanClient  # noqa: E402
from bench import streams  # noqa: E402
from bench.served import (  # noqa: E402
    CSRF, REPO, app_env, load_average, logged_in_client, prepare, serving, wait_until_quiet,
)

DEFAULT_SIZES = "200x1000,500x2500,1000x5000,2000x10000"
# The short API lists read right after a write to what they show (each request follows a PATCH of a connection,
# not timed): a page remembered with the write stamps of what it reads (core.rows.Pages) is read afresh then,
# where "API connections" and "API endpoints" read the same page again and again. Reported, without a target;
# their CPU figure includes the write's.
AFTER_A_WRITE = {"API connections after a write": "/api/v1/connections/",
                 "API endpoints after a write": "/api/v1/endpoints/"}
READS = ("connections page", "endpoints page", "API connections", "API connections 500", "API endpoints",
         "API endpoints 500", *AFTER_A_WRITE)
PAGES = ("connections page", "endpoints page")
WRITES = ("page create", "page update", "API create", "API update")
READ_PATHS = {"connections page": "/settings/connections/", "endpoints page": "/settings/endpoints/",
              "API connections": "/api/v1/connections/", "API connections 500": "/api/v1/connections/?page_size=500",
              "API endpoints": "/api/v1/endpoints/", "API endpoints 500": "/api/v1/endpoints/?page_size=500",
              **AFTER_A_WRITE}
# Targets (ms of p50 latency, queries); "constant" means the same count at every size. The pages' counts include
# the session and user lookups, and the usage columns (one query for connections, two for endpoints); the endpoints
# page reads its endpoints' destinations in one more, as the template it replaced did.
TARGETS = {
    "connections page": (10, 6),
    "endpoints page": (10, 7),
    "page create": (10, None),
    "page update": (10, None),
    "API create": (10, None),
    "API update": (10, None),
}
# Rows a second at p50 latency (rows of the page / p50), at every size: MLflow's secrets list answers 12,600.
ROWS_TARGETS = {"API connections": 15_000, "API connections 500": 15_000, "API endpoints": 20_000,
                "API endpoints 500": 20_000}


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(part) for part in size.split("x")) for size in text.split(",")]


# --- the child: one database --------------------------------------------------------------------------------


def measure(database_url: str | None, sizes: list[tuple[int, int]], reads: int, writes: int, rounds: int) -> dict:
    """Serve, seed, count queries and time every surface at every size on one database; the figures as a dict."""
    with tempfile.TemporaryDirectory(prefix="bench-surfaces-") as directory:
        env = app_env(directory, free_port(), database_url)
        token = prepare(env)
        os.environ.update(env)
        import logging

        import django

        django.setup()
        logging.getLogger("axes").setLevel(logging.WARNING)  # one login per size, not worth a line each
        from django.db import connection as database

        with serving(env, token) as served:
            browser = logged_in_client(served.url)
            # Timed through the lean client (bench/lean_client.py), holding the browser's session cookies.
            page_client = LeanClient(served.url, cookies=dict(browser.cookies))
            api_client = LeanClient(served.url, headers=served.auth)
            results = {"database": database.vendor, "version": database_version(database), "sizes": []}
            for connections, endpoints in sizes:
                seconds = seed(connections, endpoints)
                figures = {"connections": connections, "endpoints": endpoints, "seed_seconds": seconds,
                           "queries": count_queries(token, connections), "surfaces": {}}
                print(f"  {database.vendor} {connections}x{endpoints}: seeded; {wait_until_quiet()}", file=sys.stderr)
                figures["surfaces"] = time_surfaces(served.pid, page_client, api_client, (connections, endpoints), reads,
                                                    writes, rounds)
                results["sizes"].append(figures)
                print(f"  {database.vendor} {connections}x{endpoints}: "
                      + ", ".join(f"{name} {value['p50']:.1f} ms" for name, value in figures["surfaces"].items()),
                      file=sys.stderr)
            results["client_cost"] = client_cost(served.url, served.auth, reads)
            results["profile"] = profile_surfaces(token)
            browser.close()
            page_client.close()
            api_client.close()
    return results


# Where a request's own time goes, by the file (or built-in) each function is in: the first pattern that matches.
PROFILE_CATEGORIES = (
    ("middleware, sessions, users", r"django/core/handlers|django/middleware|django/contrib/(sessions|auth|messages)|"
                                    r"axes/|csp/|whitenoise/|core/(body_limits|unavailable)|asgiref/"),
    ("API views, filters, pagination", r"rest_framework/(views|viewsets|generics|mixins|pagination|request|response|"
                                       r"negotiation|filters|permissions|authentication)|django_filters/|django/forms/|"
                                       r"django/core/paginator|tokens/|core/api\.py|django/views/"),
    ("templates", r"django/template/|templatetags/"),
    ("dates, escaping, URLs", r"django/utils/(dateformat|html|safestring|text|formats|timezone|encoding)|django/urls/|/html/__init__"
                              r"|urllib/parse|method 'strftime'|method 'isoformat'"),
    ("DRF fields and serializers", r"rest_framework/(serializers|fields|relations)"),
    ("decrypting secrets, masks", r"cryptography/|encrypted_model_fields/|connections/(fields|secrets)|base64|hmac"),
    ("model instances", r"django/db/models/(base|fields|query_utils)|core/changes|related_descriptors|"
                        r"method '__reduce_ex__'|copy\.py"),
    ("query building", r"django/db/models/(sql/|query\.py|expressions|lookups)"),
    ("database driver", r"django/db/backends/|sqlite3|psycopg|method 'execute'|method 'fetch"),
    ("JSON", r"json/|rest_framework/renderers"),
    ("list rows (the pages' and the APIs' own code)", r"(connections|endpoints)/views|core/(ui|api_lists)"),
)


def profile_surfaces(token: str, requests: int = 20) -> dict[str, str]:
    """cProfile of each read surface in-process at the last size: its own time per category, and the top functions."""
    import cProfile
    import io
    import pstats

    from django.contrib.auth import get_user_model
    from django.test import Client

    page = Client(HTTP_HOST="localhost")
    page.force_login(get_user_model().objects.get(username="admin"))
    api = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {token}")
    profiles = {}
    for surface in READS:
        if surface in AFTER_A_WRITE:
            continue  # profiled as the page read again (the write is most of such a request's time)
        client = page if surface in PAGES else api
        client.get(READ_PATHS[surface])
        profiler = cProfile.Profile(time.process_time)  # CPU time: other processes' load does not count
        started = time.process_time()
        profiler.enable()
        for _ in range(requests):
            client.get(READ_PATHS[surface])
        profiler.disable()
        profiled = time.process_time() - started
        stats = pstats.Stats(profiler)
        profiles[surface] = categorized(stats, requests, profiled)
    return profiles


def categorized(stats, requests: int, profiled: float) -> str:
    """Own time per category (ms a request under cProfile, share), then the eight functions with most own time.

    A built-in (`getattr`, `str.format`, a cursor's `execute`) counts for the category of the code calling it,
    unless its own name says where it belongs (the database driver's methods).
    """
    def category(where: str) -> str:
        return next((label for label, pattern in PROFILE_CATEGORIES if re.search(pattern, where)), "other")

    def place(filename: str, line: int, name: str) -> str:
        return f"{filename}:{line}({name})" if filename != "~" else name

    totals: dict[str, float] = {}
    functions = []
    for (filename, line, name), (_, calls, own, _, callers) in stats.stats.items():
        where = place(filename, line, name)
        functions.append((own, calls, where))
        if filename == "~" and category(where) == "other" and callers:
            for (caller_file, caller_line, caller_name), caller_figures in callers.items():
                label = category(place(caller_file, caller_line, caller_name))
                totals[label] = totals.get(label, 0.0) + caller_figures[2]
        else:
            totals[category(where)] = totals.get(category(where), 0.0) + own
    total = sum(totals.values())
    shorten = re.compile(r"/\S*site-packages/|/\S*/wt-[^/]+/|/usr/lib/python3\.\d+/|" + re.escape(str(REPO)) + "/")
    lines = [f"{requests} requests, {profiled * 1000 / requests:.1f} ms CPU each under cProfile (which slows Python "
             f"calls several times over: compare shares)"]
    for label, own in sorted(totals.items(), key=lambda item: -item[1]):
        lines.append(f"  {own * 1000 / requests:7.2f} ms {own / total:4.0%}  {label}")
    lines.append("  functions with the most own time:")
    for own, calls, where in sorted(functions, reverse=True)[:8]:
        lines.append(f"  {own * 1000 / requests:7.2f} ms {calls // requests:6d} calls  {shorten.sub('', where)}")
    return "\n".join(lines)


def database_version(database) -> str:
    with database.cursor() as cursor:
        cursor.execute("select sqlite_version()" if database.vendor == "sqlite" else "show server_version")
        return cursor.fetchone()[0]


def seed(connections: int, endpoints: int) -> float:
    """Grow the database to `connections` connections (names c-NNNNN) and `endpoints` endpoints (e-NNNNNN)."""
    from django.db import connection as database

    from connections.models import Connection
    from endpoints.models import Destination, Endpoint
    from teams.models import Team

    started = time.monotonic()
    team = Team.objects.default()
    have = Connection.objects.filter(name__startswith="c-").count()
    Connection.objects.bulk_create(
        Connection(name=f"c-{number:05d}", provider="openai", auth_method="api_key", team=team,
                   secrets={"api_key": f"sk-seed-{number:05d}-abcdefghijklmnopqrstuvwxyz0123"},
                   description="seeded by bench/surfaces.py")
        for number in range(have, connections)
    )
    ids = list(Connection.objects.filter(name__startswith="c-").order_by("name").values_list("id", flat=True))
    have = Endpoint.objects.filter(name__startswith="e-").count()
    # Endpoint k belongs to connection k * connections // endpoints: the same share per connection (5 at the issue's
    # sizes) at every size, so the first page shows as many endpoint links per row whatever the table's size.
    created = Endpoint.objects.bulk_create(
        (Endpoint(name=f"e-{number:06d}", task="chat" if number % 2 else "embeddings", team=team)
         for number in range(have, endpoints)),
        batch_size=2000,
    )
    if any(endpoint.pk is None for endpoint in created):  # a database that does not return the new ids
        created = list(Endpoint.objects.filter(name__in=[e.name for e in created]).order_by("name"))
    Destination.objects.bulk_create(
        (Destination(endpoint=endpoint, connection_id=ids[min(number * connections // endpoints, len(ids) - 1)],
                     model="gpt-4o-mini", role="primary", weight=100)
         for number, endpoint in enumerate(created, start=have)),
        batch_size=2000,
    )
    if database.vendor == "postgresql":
        # A live database's planner statistics follow its growth (autovacuum analyzes a table once a tenth of it is
        # new); measured straight after a bulk load, PostgreSQL would plan for the tables as they were before it,
        # until autovacuum came by in the middle of a run. Vacuumed too, as autovacuum would soon after the load.
        with database.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    return time.monotonic() - started


def write_before_read(tag: str) -> tuple[str, str]:
    """The write (path, JSON body) an "after a write" read follows: a connection both lists show, described anew."""
    return "/api/v1/connections/c-00002/", json.dumps({"description": f"bench {tag}"})


def write_request(surface: str, name: str, target: str) -> tuple[str, str, dict, int]:
    """Method, path, body and expected status of one write; `name` is new, `target` an existing connection."""
    key = f"sk-bench-{name}-0123456789abcdefghij"
    return {
        "page create": ("POST", "/settings/connections/new/",
                        {"name": name, "provider": "openai", "auth_method": "api_key", "secrets.api_key": key,
                         "description": ""}, 302),
        "page update": ("POST", f"/settings/connections/{target}/edit/",
                        {"name": target, "provider": "openai", "auth_method": "api_key", "secrets.api_key": key,
                         "description": "seeded by bench/surfaces.py"}, 302),
        "API create": ("POST", "/api/v1/connections/",
                       {"name": name, "provider": "openai", "auth_method": "api_key", "secrets": {"api_key": key}}, 201),
        "API update": ("PATCH", f"/api/v1/connections/{target}/", {"secrets": {"api_key": key}}, 200),
    }[surface]


def count_queries(token: str, connections: int) -> dict[str, int]:
    """Queries of one request to each surface, in-process with the test client (first page, a fresh name)."""
    from django.contrib.auth import get_user_model
    from django.db import connection as database
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    page = Client(HTTP_HOST="localhost")
    page.force_login(get_user_model().objects.get(username="admin"))
    api = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {token}")
    counts = {}
    for surface in READS + WRITES:
        client = page if surface in PAGES or surface.startswith("page") else api
        for attempt in ("warm", "count"):  # the second request: per-process one-offs (token last use) excluded
            if surface in AFTER_A_WRITE:
                response = client.patch(*write_before_read(attempt), content_type="application/json")
                assert response.status_code == 200, (surface, response.status_code)
            with CaptureQueriesContext(database) as captured:
                if surface in READ_PATHS:
                    response = client.get(READ_PATHS[surface])
                    expected = 200
                else:
                    name = f"q-{surface[:3].lower()}-{attempt}-{connections}"
                    method, path, body, expected = write_request(surface, name, "c-00001")
                    if client is page:
                        response = client.post(path, body)
                    else:
                        response = client.generic(method, path, json.dumps(body), content_type="application/json")
            assert response.status_code == expected, (surface, response.status_code)
        counts[surface] = len(captured)
    return counts


def time_surfaces(pid: int, page_client: LeanClient, api_client: LeanClient, size: tuple[int, int], reads: int,
                  writes: int, rounds: int) -> dict:
    """p50/p99 latency, server CPU per request and rows/s of each surface, interleaved in rounds."""
    latencies = {surface: [] for surface in READS + WRITES}
    cpu = dict.fromkeys(READS + WRITES, 0.0)
    csrf = CSRF.search(page_client.get("/settings/connections/new/").text).group(1)
    for surface in READS + WRITES:  # warm up each worker and thread
        run_surface(surface, page_client, api_client, csrf, 10, f"w{size[0]}")
    for round_number in range(rounds):
        for surface in READS + WRITES:
            count = (reads if surface in READS else writes) // rounds
            before = cpu_seconds(pid)
            latencies[surface] += run_surface(surface, page_client, api_client, csrf, count,
                                              f"r{size[0]}-{round_number}")
            cpu[surface] += cpu_seconds(pid) - before
    figures = {}
    for surface, values in latencies.items():
        rows = page_rows(surface, size)
        p50 = percentile(values, 50)
        figures[surface] = {"p50": p50, "p99": percentile(values, 99), "cpu_ms": cpu[surface] * 1000 / len(values),
                            "rows_per_second": rows * 1000 / p50}
    return figures


def page_rows(surface: str, size: tuple[int, int]) -> int:
    """Rows one request returns (the first page of a table of `size` connections and endpoints) or writes."""
    if surface not in READS:
        return 1
    return min(500 if surface.endswith(" 500") else 50, size[1] if "endpoints" in surface else size[0])


def run_surface(surface: str, page_client: LeanClient, api_client: LeanClient, csrf: str, count: int,
                tag: str) -> list[float]:
    """`count` sequential requests to one surface; latencies in ms. Creates use fresh names, updates c-00002."""
    latencies = []
    for number in range(count):
        client = page_client if surface in PAGES or surface.startswith("page") else api_client
        if surface in AFTER_A_WRITE:
            path, body = write_before_read(f"{tag}-{number}")
            if client.send(client.build("PATCH", path, json_body=json.loads(body))).status_code != 200:
                raise SystemExit(f"{surface}: the write before the read failed")
        if surface in READ_PATHS:
            request = client.build("GET", READ_PATHS[surface])
            expected = 200
        else:
            method, path, body, expected = write_request(surface, f"n-{surface[:3].lower()}-{tag}-{number}", "c-00002")
            if client is page_client:
                request = client.build(method, path, form=body | {"csrfmiddlewaretoken": csrf})
            else:
                request = client.build(method, path, json_body=body)
        started = time.perf_counter()
        response = client.send(request)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != expected:
            raise SystemExit(f"{surface}: {response.status_code} {response.text[:300]}")
    return latencies


CLIENT_COST_PATH = READ_PATHS["API connections"]


def client_cost(url: str, auth: dict[str, str], count: int) -> dict[str, float]:
    """p50 latency (ms) of the same read through httpx and through the lean client, alternated request by request
    (at the last size): what the timing client's own work adds to each latency in the table."""
    latencies: dict[str, list[float]] = {"httpx": [], "lean": []}
    with httpx.Client(base_url=url, headers=auth, timeout=30) as heavy, LeanClient(url, headers=auth) as lean:
        for _ in range(10):
            heavy.get(CLIENT_COST_PATH), lean.get(CLIENT_COST_PATH)
        for _ in range(count):
            request = heavy.build_request("GET", CLIENT_COST_PATH)
            started = time.perf_counter()
            heavy.send(request).raise_for_status()
            latencies["httpx"].append((time.perf_counter() - started) * 1000)
            request = lean.build("GET", CLIENT_COST_PATH)
            started = time.perf_counter()
            assert lean.send(request).status_code == 200
            latencies["lean"].append((time.perf_counter() - started) * 1000)
    return {client: percentile(values, 50) for client, values in latencies.items()}


# --- the parent: every database, the table, the plot, the report -------------------------------------------


def run_child(database_url: str | None, options: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", "--sizes", options.sizes, "--reads", str(options.reads),
               "--writes", str(options.writes), "--rounds", str(options.rounds)]
    if database_url:
        command += ["--database-url", database_url]
    result = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"measuring on {database_url or 'SQLite'} failed")
    return json.loads(result.stdout)


def table(runs: list[dict]) -> str:
    """One line per size and surface, each database's figures side by side."""
    header = f"| rows (connections / endpoints) | surface |"
    rule = "|---|---|"
    for run in runs:
        header += f" {run['database']} p50 ms | p99 ms | CPU ms | queries | rows/s |"
        rule += "---:|---:|---:|---:|---:|"
    lines = [header, rule]
    for index, size in enumerate(runs[0]["sizes"]):
        for surface in READS + WRITES:
            line = f"| {size['connections']:,} / {size['endpoints']:,} | {surface} |"
            for run in runs:
                figures = run["sizes"][index]["surfaces"][surface]
                line += (f" {figures['p50']:.1f} | {figures['p99']:.1f} | {figures['cpu_ms']:.1f} |"
                         f" {run['sizes'][index]['queries'][surface]} | {figures['rows_per_second']:,.0f} |")
            lines.append(line)
    return "\n".join(lines)


def verdicts(runs: list[dict]) -> list[str]:
    """Each target on each database: met or missed, with the figure that decides."""
    lines = []
    for run in runs:
        for surface in READS + WRITES:
            p50s = [size["surfaces"][surface]["p50"] for size in run["sizes"]]
            counts = [size["queries"][surface] for size in run["sizes"]]
            constant = len(set(counts)) == 1
            queries = f"queries {'/'.join(map(str, counts))} ({'constant' if constant else 'NOT constant'}"
            if surface in ROWS_TARGETS:
                worst = min(size["surfaces"][surface]["rows_per_second"] for size in run["sizes"])
                met = worst >= ROWS_TARGETS[surface] and constant
                detail = f"{worst:,.0f} rows/s at the slowest size (target ≥ {ROWS_TARGETS[surface]:,}), {queries})"
            elif surface not in TARGETS:  # reported only
                met = None
                slowest = min(size["surfaces"][surface]["rows_per_second"] for size in run["sizes"])
                detail = f"p50 {max(p50s):.1f} ms at the slowest size, {slowest:,.0f} rows/s, {queries})"
            else:
                target_ms, target_queries = TARGETS[surface]
                # Write targets are stated at 200 connections / 1,000 endpoints (the first size); reads at every size.
                worst = max(p50s) if surface in READS else p50s[0]
                met = worst <= target_ms and (surface not in READS or constant) and (
                    target_queries is None or max(counts) <= target_queries)
                detail = f"p50 {worst:.1f} ms (target ≤ {target_ms} ms)"
                if surface in READS:
                    detail += f", {queries}" + (f", target ≤ {target_queries})" if target_queries else ")")
            verdict = "no target" if met is None else "met" if met else "**missed**"
            lines.append(f"- {run['database']}, {surface}: {verdict}: {detail}")
    return lines


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, (latency, cpu) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    styles = {"sqlite": "-", "postgresql": "--"}
    for run in runs:
        for surface, marker in zip(READS, "osd^v<>p"):
            x = [size["endpoints"] if "endpoints" in surface else size["connections"] for size in run["sizes"]]
            label = f"{surface} ({run['database']})"
            line = styles.get(run["database"], ":")
            latency.plot(x, [size["surfaces"][surface]["p50"] for size in run["sizes"]], line, marker=marker,
                         label=label)
            cpu.plot(x, [size["surfaces"][surface]["cpu_ms"] for size in run["sizes"]], line, marker=marker,
                     label=label)
    for axes, title, ylabel in ((latency, "p50 latency over HTTP", "ms"),
                                (cpu, "server CPU per request (less sensitive to other load)", "ms")):
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
        axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axes.set_xlabel("rows in the table (connections; endpoints for the endpoints API)")
        axes.set_ylabel(ylabel)
        axes.set_ylim(bottom=0)
        axes.set_title(title, fontsize="medium")
        axes.grid(True, which="both", alpha=0.3)
    latency.axhline(10, color="grey", linewidth=0.8, linestyle=":")
    latency.legend(fontsize="x-small")
    figure.suptitle("List pages (50 rows) and list APIs (50 and 500 rows a page) against the number of rows")
    figure.tight_layout()
    figure.savefig(path)


def run_script(*command: str) -> str:
    result = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True)
    return (result.stdout + (f"\n(exit status {result.returncode})\n{result.stderr[-1500:]}" if result.returncode
                             else "")).strip()


def gateway_verdicts(quick: str, delayed: str) -> list[str]:
    """The gateway's targets from bench/gateway.py's output (delay 0 and 20 ms)."""
    lines = []
    try:
        overhead = float(re.search(r"concurrency 1:.*?overhead p50 ([+-][\d.]+) ms", quick, re.S).group(1))
        cpu = float(re.search(r"concurrency 1:.*?gateway CPU ([\d.]+) ms/request", quick, re.S).group(1))
        ratio = float(re.search(r"concurrency 16:.*?throughput ratio ([\d.]+)", delayed, re.S).group(1))
    except AttributeError:
        return ["- gateway: the gateway bench did not print its figures (see its output below)"]
    lines.append(f"- gateway overhead p50 (sequential, stub answering at once): {overhead:+.2f} ms "
                 f"(target ≤ 1.5 ms): {'met' if overhead <= 1.5 else '**missed**'}")
    lines.append(f"- gateway server CPU: {cpu:.2f} ms/request (target ≤ 1.5 ms): "
                 f"{'met' if cpu <= 1.5 else '**missed**'}")
    lines.append(f"- gateway throughput with a 20 ms stub, 16 clients: {ratio:.2f} of direct (target ≥ 0.90): "
                 f"{'met' if ratio >= 0.9 else '**missed**'}")
    split = re.search(r"concurrency 1:.*?three-destination split.*?([+-][\d.]+) ms over one destination", quick, re.S)
    if split:
        lines.append(f"- a three-destination split over one destination, p50 (one client, the two alternated call by "
                     f"call): "
                     f"{float(split.group(1)):+.3f} ms "
                     f"(target ≤ 0.1 ms): {'met' if float(split.group(1)) <= 0.1 else '**missed**'}")
    limits = re.search(r"concurrency 1:.*?limits .*?([+-][\d.]+) ms and ([+-][\d.]+) ms of server CPU", quick, re.S)
    if limits:
        cost = max(float(limits.group(1)), float(limits.group(2)))
        lines.append(f"- limits (a rate and a budget counted on every call, SQLite; one client, alternated call by "
                     f"call with unlimited calls): {float(limits.group(1)):+.3f} ms "
                     f"p50 and {float(limits.group(2)):+.3f} ms of CPU a call (target ≤ 0.2 ms): "
                     f"{'met' if cost <= 0.2 else '**missed**'}")
    return lines


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def client_line(runs: list[dict]) -> str:
    """What the timing client is, and what httpx would have added to each latency (measured in the same run)."""
    costs = "; ".join(
        f"{run['database']} p50 {run['client_cost']['httpx']:.2f} ms through httpx, "
        f"{run['client_cost']['lean']:.2f} ms through the lean client"
        for run in runs if "client_cost" in run)
    return ("bench/lean_client.py, a keep-alive HTTP/1.1 client on a plain socket that sends requests built "
            "before the timer starts (httpx, the client of earlier reports, spends most of a millisecond of CPU "
            "on each request on its own side, on the cores the server uses). The same read of "
            f"`{CLIENT_COST_PATH}` at the last size, the two clients alternated request by request: {costs}.")


def report(runs: list[dict], options: argparse.Namespace, load_before: str, load_after: str, extras: dict) -> str:
    memory_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    versions = ", ".join(f"{run['database']} {run['version']}" for run in runs)
    sections = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (bench/surfaces.py" + (", bench/gateway.py" if "gateway" in extras else "")
        + (", bench/streams.py" if "streams" in extras else "")
        + (", bench/rotation.py" if "rotation" in extras else "")
        + (", bench/usage.py" if "usage" in extras else "") + "); do not edit by hand, run it again.",
        "",
        "## Machine",
        "",
        f"- {os.cpu_count()} cores ({cpu_model()}), {memory_gb:.1f} GB memory, Linux {platform.release()}, "
        f"Python {platform.python_version()}; {versions}",
        f"- load average (1, 5, 15 min) before: {load_before}; after: {load_after}. This is a virtual machine "
        "sharing its host: the same code's latencies move by up to a quarter between runs, so compare "
        "figures within one report; the query counts do not depend on it and the server CPU ms per request much "
        "less than latency does.",
        f"- server: gunicorn as `make run` starts it (config/gunicorn.py: 2 uvicorn workers, "
        "access log on), one keep-alive client sending requests one after another.",
        "- client: " + client_line(runs),
        "",
        "## Reproduce",
        "",
        "```",
        "make bench",
        "# or, for one database and other sizes:",
        "make setup && .venv/bin/pip install -r requirements-bench.txt",
        f".venv/bin/python bench/surfaces.py --sizes {options.sizes}",
        "```",
        "",
        "## Targets",
        "",
        "Latency is the HTTP round trip measured by the client, so it bounds the server time from above; rows/s is "
        "the rows of one page divided by its p50 latency. The create/update targets are read at the first size "
        "(200 connections / 1,000 endpoints); the pages' and the APIs' at every size.",
        "",
        *verdicts(runs),
        *extras.get("gateway_verdicts", []),
        *(streams.verdicts(extras["streams"][0][1]) if "streams" in extras else []),
        "",
        "## Latency against row count",
        "",
        "![p50 latency of the list pages and APIs against the number of rows](benchmarks.png)",
        "",
        "## Every surface",
        "",
        f"{options.reads} requests per read surface and {options.writes} per write surface at each size, in "
        f"{options.rounds} interleaved rounds after a warm-up. Queries: one request's count in-process "
        "(Django test client + CaptureQueriesContext, same settings and database; the pages' counts include "
        "the session and user lookups). rows/s: rows returned (50 or 500 a page) or written per second of p50 "
        "latency.",
        "",
        table(runs),
        "",
    ]
    sections += [
        "## Where the lists' time goes",
        "",
        "cProfile of each read surface in-process (Django test client, no HTTP) at the largest size, in CPU time, "
        "by category: a function's own time counts for the category of its file, a built-in's for its caller's "
        "(bench/surfaces.py, `PROFILE_CATEGORIES`). cProfile slows Python calls several times over and the "
        "machine is shared, so compare shares within a profile, not milliseconds between profiles.",
        "",
        "**Before** (the code before the lists' fast paths; kept in bench/lists-profile-before.txt). The pages "
        "spent a third of their time in the template engine and a sixth in per-value filters, escapes and URL "
        "building for 50 rows (two `_time.html` includes and three date formats a row, a `{% url %}` reverse per "
        "link on the Endpoints page), plus model instances with their loaded-state snapshots; the database "
        "itself was 2%. The APIs spent most of their time building model instances (500 connections and their "
        "2,500 prefetched endpoints, a queryset cloned per row for the prefetch) and in DRF's per-field "
        "attribute lookups; decrypting secrets for the masks was 6-7%.",
        "",
        "**What changed.** The pages read `.values()` rows and render their table body in Python "
        "(`connection_rows()`, `endpoint_rows()`: one string format a row, each value escaped once, each "
        "route's URL parts and the time zone looked up once a page); the rest of the page is still the "
        "template; the Endpoints page reads its endpoints' destinations (split, models) in one query a page, "
        "the LLM Connections page its connections' endpoints through their destinations, each once, in one. "
        "Tests render the templates they replaced (tests/*/reference/) on the same rows and compare "
        "the HTML byte for byte. The list APIs read `.values()` rows and represent them with the serializer's "
        "own fields (core/api_lists.py), each related list (a connection's endpoint names, an endpoint's nested "
        "destinations) in one query a page, read as the view's prefetch reads it; tests compare the "
        "JSON with the serializer's on the same rows, and the OpenAPI schema is unchanged. Masks are remembered "
        "by ciphertext (a new ciphertext on every change of the secrets; other keys are another entry), so a "
        "list decrypts a row once per process. The API's token lookup is one compiled statement, and a request "
        "naming none of a view's filters skips building the FilterSet. "
        "Then, for the APIs: a page's total is `COUNT(*)` (SQLite counts a table from its smallest index; "
        "counting the key read every row, most of a short endpoints list at 10,000); the rows a compiled "
        "statement fetches are converted by a function written once for it (a dict display a row); JSON columns "
        "are parsed by orjson where it gives json.loads' very value; a list whose fields are all plain JSON is "
        "not inspected item by item before orjson writes it; a time read in UTC and shown in UTC is written from "
        "its digits; and a request without an Accept header (or `*/*`) gets DRF's choice of renderer without "
        "parsing it.",
        "",
        "**The pages, next.** Each row's HTML is remembered by everything it is made from (its values, related "
        "cells, usage, key age and the page's zone, language, links and keys; `connection_row()`, "
        "`endpoint_row()`), so a page formats only rows it has not shown; the text around the rows is rendered "
        "once per set of values the template reads, with the rows and a fresh CSRF token put in per response "
        "(`core.ui.RememberedPageResponse`); the queryset is built only when the ORM's paginator reads it; the "
        "team filter's names and the session are read by compiled statements (`core.sessions`). A connection's "
        "endpoint links and an endpoint's destinations read the related row by its key in a subquery rather than "
        "a join, which PostgreSQL answered by hashing the whole endpoints (connections) table: 5-7 ms of the LLM "
        "Connections page's database time at 10,000 endpoints, about 2 ms now.",
        "",
        "**On PostgreSQL.** A request borrows a pooled connection and gives it back at its end, in autocommit (no "
        "BEGIN or COMMIT, and nothing is sent on giving it back). Its round trips: one per statement (the LLM "
        "Connections page reads its session, its user (Django's auth), the page's rows with their total, the "
        "connections' endpoints, their usage and the team names; the Endpoints page its destinations, hourly usage "
        "and last use; an API list its token and its page), and the pool's check of the connection it lends (an "
        "empty statement) when that connection was not lent in the last second (core/postgresql/base.py; Django's "
        "`CONN_HEALTH_CHECKS` checks every one, 0.09 ms of CPU and 0.17 ms of latency a request). Every statement "
        "but the user's is a compiled one (core.rows), which on PostgreSQL is prepared on each pooled connection the "
        "first time and afterwards only bound and executed (`DATABASE_PREPARED_STATEMENTS`): Django's cursor sent "
        "each with its values in the text, for the server to parse and plan again, 0.1-1 ms a statement. The seeded "
        "tables are analyzed before measuring, as autovacuum analyzes a live database's. A page of up to 64 rows "
        "reads its related rows' columns by key (core/api_lists.py `keyed_columns()`, `through_slugs()`) where "
        "PostgreSQL answered a join by hashing the whole related table; longer pages join.",
        "",
        "**What a 50-row API list on PostgreSQL was made of, and what changed** (2,000 / 10,000, measured apart "
        "from `make bench`). In process through Django's test client the endpoints list took 2.3-2.4 ms, its "
        "three statements about 1.4 ms as the app waited for them: the token 0.2, the page with its total 0.67 "
        "(counting 10,000 rows: 0.8 ms of the server's time under EXPLAIN ANALYZE, the page itself 0.03), the "
        "destinations 0.54 (a round trip alone is 0.1 ms); the connections list's endpoint names 0.72. Served, the "
        "target's 2.5 ms a request was below that. Three changes: (1) **totals by write stamps**: the tables a "
        "total counts have a stamp that triggers change on every write (core/stamps.py); a page reads the stamps "
        "with its rows and reuses the total it remembered with the same stamps, so only a list's first page after a "
        "write counts (the page statement: 0.67 ms to 0.25); (2) the pool checks only connections not lent in the "
        "last second; (3) on PostgreSQL an unfiltered API page of up to 64 rows reads its related lists in its own "
        "statement, the endpoint names as an array and the destinations as JSON (`folded_list()`), a statement and a "
        "round trip less. In process, alternated, two runs each, at 2,000 / 10,000: endpoints 2.22-2.23 ms to "
        "1.90-1.97 with (3), connections 2.53-2.72 to 2.14-2.23; at 200 / 1,000: 2.20-2.28 to 1.94-2.25 and 2.63-2.96 "
        "to 2.08-2.43. Pages of 500 keep a statement for each related list: folded, 500 subqueries cost more than one "
        "join (endpoints 500 at 200 / 1,000: 19-21 ms against 12). A first version read the folded names through a "
        "join, which at 200 / 1,000 PostgreSQL planned as a hash of the endpoints table for every connection (7.7 "
        "ms a page of 50 in that run's bench): each folded column now reads the related rows by key. Served on one "
        "machine, blocks of 300 requests alternated between builds, before (1) and (2) and after: endpoints "
        "3.6-4.9 ms to 2.4-2.9, connections 3.7-5.1 to 2.7-3.9; the served figures vary by a millisecond from block "
        "to block on this shared machine, the in-process ones much less.",
        "",
        "**Remembered short pages.** After those changes a 50-row list on PostgreSQL still took 2.2-2.7 ms of the "
        "server's CPU (a redirect served through the same stack, 0.45): the page statement's rows fetched, converted "
        "and represented, and the wait for that statement. A short page is now made into its items once and "
        "remembered with the write stamps of every table read for it, read with its rows (core.rows.Pages; "
        "destinations and users got stamps of their own); asked for again, it reads only those stamps, and the "
        "connections list works out its keys' ages and rotation status again from the columns it kept "
        "(docs/architecture.md). Served on PostgreSQL, two servers on one database, blocks of 300 requests "
        "alternated, medians of 6 blocks at 2,000 / 10,000 (apart from `make bench`): endpoints 2.87-2.99 ms to "
        "1.41-1.43 (CPU 2.2 to 1.2), connections 3.46-3.57 to 1.87 (CPU 2.7 to 1.7); on SQLite, served alone, "
        "endpoints 1.65-1.95 to 0.87-1.22, connections 2.04-2.26 to 1.11-1.52. A page read right after a write to "
        "what it shows reads the "
        "stamps, then the page: the \"after a write\" lines of the table, each read following a PATCH of a "
        "connection both lists show (their CPU column includes the write's). In process, alternated with the build "
        "before, such a read was within noise of what it cost before (4.8-6.7 ms against 4.8-5.9 for connections, "
        "3.8-3.9 against 3.1-3.6 for endpoints, at 200 / 1,000: a row just written is slower to read than the same "
        "row read again, in either build).",
        "",
        "```",
        Path(REPO / "bench/lists-profile-before.txt").read_text().strip(),
        "```",
        "",
        "**After** (this run; the short API pages are read again and again, so these profile remembered pages):",
        "",
        "```",
        "\n\n".join(f"### {surface}\n{text}" for surface, text in runs[0]["profile"].items()),
        "```",
        "",
    ]
    if "gateway" in extras:
        sections += ["## Gateway overhead (bench/gateway.py)", "", "Stub answering at once:", "", "```",
                     extras["gateway"], "```", "", "Stub answering after 20 ms (a realistic upstream):", "", "```",
                     extras["gateway_delayed"], "```", "", GATEWAY_BURST_NOTE, "", "### CPU of one call, in process", "",
                     Path(REPO / "bench/gateway-cpu-profile.md").read_text().strip(), ""]
    if "routing" in extras:
        sections += ["## Routing across destinations (bench/routing.py)", "",
                     "In-process: the endpoint read, the route chosen and its account built, for one destination "
                     "and for a three-way split (the split's end-to-end figure is the `three-destination split` "
                     "line of the gateway runs above).", "", "```", extras["routing"], "```", ""]
    if "streams" in extras:
        sections += streams_section(extras["streams"], options)
    if "rotation" in extras:
        sections += ["## Encryption key rotation (bench/rotation.py)", "", "```", extras["rotation"], "```", ""]
    if "usage" in extras:
        sections += ["## Usage tracking (bench/usage.py)", "", USAGE_NOTE, "", "```", extras["usage"], "```", ""]
    return "\n".join(sections)


GATEWAY_BURST_NOTE = (
    "**16 clients and a 20 ms stub.** The stub answers every call after the same 20 ms, so the 16 clients stay in "
    "step: each of the two workers gets its 8 calls at once, and the eighth waits for the CPU of the seven before "
    "it, on the way in and on the way out (+1.5-2 ms over direct at 2 clients, +3.7 at 8, +4.5 at 16, in an "
    "earlier run). Measured apart from `make bench` on one machine, two rounds each, alternated: 2 workers "
    "(`make run`'s default, one per core) 0.82-0.86 of direct at 0.66-0.69 ms of server CPU a call; 4 workers "
    "0.88-0.91 at 0.91-1.04 ms (the workers no longer have a core each); 3 workers 0.81-0.89. More workers than "
    "cores trade a third more CPU a call (and more memory under 1,024 streams) for shorter queues in this one "
    "pattern, so the default stays; `WEB_CONCURRENCY` sets it (README, Serving).\n\n"
    "**Where a call waited.** Timed inside the server at 16 clients (SQLite), a call's token and endpoint read "
    "took 1.1-1.5 ms of its wall time, of which the read itself 0.3 ms: the rest was the hand-offs, a database "
    "thread waiting to win the interpreter from a loop busy with other calls (0.4-0.5 ms) and the loop coming round "
    "to the result (0.6-0.9 ms). With the loop waiting on the read instead (`GATEWAY_DATABASE_HOLD_SECONDS`, "
    "core/db_threads.py) the read takes 0.35-0.55 ms of wall time. Two servers side by side, alternated rounds of 800 "
    "calls: 0.82 of direct without the hold against 0.91 with it (medians of 6 rounds), at 0.86 against 1.00 ms of "
    "server CPU a call. The hold costs CPU where the server is saturated: with a stub answering at once and 16 "
    "clients, 7% fewer calls a second (0.66 against 0.77 ms a call). On PostgreSQL the read is a round trip to "
    "another process, which the loop can spend on other calls: there the hold lost (0.72 against 0.69 of direct) and "
    "is off by default. With many calls in flight the loop has others to serve while a read runs: at 1,024 streams "
    "(512 a process) the hold lengthened the slowest first chunks (p99 +36 to +46 ms over direct, against +20 to +25 "
    "without it), so it applies only while a process serves at most 32 calls (gateway/views.py). The usage writer, "
    "whose CPU also delays the loop, now inserts the calls' rows with one `executemany` instead of model instances: "
    "0.016 against 0.05 ms a call, timed alone."
)


def run_streams(server: str, levels: str, command: str | None = None) -> tuple[dict | None, str]:
    """bench/streams.py's figures (None if it failed) and its printed output."""
    with tempfile.TemporaryDirectory(prefix="bench-streams-report-") as directory:
        figures = Path(directory) / "streams.json"
        output = run_script("bench/streams.py", "--concurrency", levels, "--json", str(figures),
                            *(["--server-command", command] if command else []))
        return (json.loads(figures.read_text()) if figures.exists() else None), f"{server}:\n{output}"


def streams_section(runs: list[tuple[str, dict, str]], options: argparse.Namespace) -> list[str]:
    measured = [(server, results) for server, results, _ in runs if results]
    if measured:
        streams.plot(measured, options.report.with_name(f"{options.report.stem}-streams.png"))
    return [
        "## Concurrent streams (bench/streams.py)",
        "",
        "A stub provider streams 50 chunks over 5 s; each client starts its next stream as soon as one ends; the "
        "same clients run directly against the stub, then through the gateway (SQLite, as `make run` serves). A "
        "side probe asks `/healthz` and the signed-in LLM Connections page once a second during the gateway run. "
        "Server CPU is the whole server process tree's, per completed stream and per relayed chunk. A `≥` marks "
        "a percentile that counts streams still waiting at the end.",
        "",
        "The server `make run` starts is gunicorn with uvicorn workers (config/gunicorn.py, config/workers.py): "
        "gunicorn supervises the workers (heartbeat timeout, restart, graceful shutdown) and runs the hooks "
        "`/metrics` needs in multiprocess mode. The rows marked granian serve the same application with granian "
        "at the two levels that matter, in the same run, to show what the other server would change. The load "
        "generator (stub and clients) shares the machine's 2 cores with the server; both read and write HTTP by "
        "hand on raw asyncio protocols so that they take as little of them as they can (the clients' CPU is in "
        "each level's output; with aiohttp's client they took 45% of a core at 1,024 streams).",
        "",
        *([f"![streams relayed against direct](benchmarks-streams.png)", ""] if measured else []),
        streams.table(measured),
        "",
        *[part for _, _, output in runs for part in ("```", output, "```", "")],
    ]


GRANIAN = ("sh -c 'exec .venv/bin/granian --interface asgi --workers 2 --no-ws --backlog 2048 --host 127.0.0.1 "
           "--port $PORT config.asgi:application'")


USAGE_NOTE = (
    "The cost of usage tracking on a gateway call's path (timed in-process), and on PostgreSQL 30 days of hourly "
    "totals at 100 calls/s with one hour of call rows written by the writer's own code: bytes per call, what "
    "the retention keeps, the Usage tab's and the lists' time (Django test client, in-process), the purge."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="connections x endpoints, comma-separated")
    parser.add_argument("--reads", type=int, default=200, help="requests per read surface and size")
    parser.add_argument("--writes", type=int, default=100, help="requests per write surface and size")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--database-url", help="also measure on this (PostgreSQL) database; it is written to")
    parser.add_argument("--report", type=Path, help="write this Markdown report and a PNG plot next to it")
    parser.add_argument("--gateway", action=argparse.BooleanOptionalAction, default=True,
                        help="with --report: also run bench/gateway.py (default: yes)")
    parser.add_argument("--rotation", action="store_true", help="with --report: also run bench/rotation.py")
    parser.add_argument("--usage", action=argparse.BooleanOptionalAction, default=True,
                        help="with --report: also run bench/usage.py (default: yes)")
    parser.add_argument("--streams", default="", metavar="LEVELS",
                        help="with --report: also run bench/streams.py at these concurrencies (e.g. 16,64,256,1024)")
    parser.add_argument("--compare-servers", default="", metavar="LEVELS",
                        help="with --streams: also serve with granian at these concurrencies, for the comparison")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    sizes = parse_sizes(options.sizes)

    if options.child:
        json.dump(measure(options.database_url, sizes, options.reads, options.writes, options.rounds), sys.stdout)
        return

    load_before = load_average()
    runs = [run_child(None, options)]
    if options.database_url:
        runs.append(run_child(options.database_url, options))
    load_after = load_average()
    print(f"{os.cpu_count()} cores; load average before {load_before}, after {load_after}\n")
    print(table(runs))
    print()
    print("\n".join(verdicts(runs)))

    if options.report:
        options.report.parent.mkdir(parents=True, exist_ok=True)
        plot(runs, options.report.with_suffix(".png"))
        extras = {}
        if options.gateway:
            extras["gateway"] = run_script("bench/gateway.py", "--limits")
            extras["gateway_delayed"] = run_script("bench/gateway.py", "--delay", "20", "--requests", "1600")
            extras["gateway_verdicts"] = gateway_verdicts(extras["gateway"], extras["gateway_delayed"])
            print("\n".join(extras["gateway_verdicts"]))
            extras["routing"] = run_script("bench/routing.py") + (
                "\n\n" + run_script("bench/routing.py", "--database-url", options.database_url)
                if options.database_url else "")
        if options.streams:
            extras["streams"] = [("gunicorn + uvicorn workers (make run)", *run_streams("make run", options.streams))]
            if options.compare_servers:
                extras["streams"].append(("granian", *run_streams("granian", options.compare_servers, GRANIAN)))
            if extras["streams"][0][1]:
                print("\n".join(streams.verdicts(extras["streams"][0][1])))
            else:
                extras.pop("streams")  # what it printed is in the run's output; the report keeps its last figures
        if options.rotation:
            extras["rotation"] = run_script("bench/rotation.py")
        if options.usage:
            extras["usage"] = run_script("bench/usage.py", *(["--database-url", options.database_url]
                                                              if options.database_url else []))
        options.report.write_text(report(runs, options, load_before, load_average(), extras))
        print(f"\nwrote {options.report} and {options.report.with_suffix('.png')}")


if __name__ == "__main__":
    main()
