"""Benchmark: streamed chat completions relayed by the gateway, against the same streams read directly. Not a test.

Starts a stub upstream (its own process: asyncio, one timer for every open stream) that answers OpenAI's
streaming chat completions with --chunks `data: {chat.completion.chunk}` events spread over
--stream-seconds (the first at once, then one every stream-seconds/chunks), then `data: [DONE]`; and the
app served as `make run` serves it (bench/served.py: gunicorn, a throwaway SQLite or --database-url, or
--server-command to compare servers). For each level of --concurrency, a load client (its own process, reading
HTTP by hand so that it takes little of the cores it shares with the server) runs that many clients, each starting its next stream as soon as one ends (first starts spread
over one stream's length), for --seconds directly against the stub, then through
`POST /gateway/v1/chat/completions` (`"stream": true`, Bearer token, an endpoint created through the API).

A stream fails when its status is not 200, it breaks off, times out (--timeout between bytes), carries an
error event or fewer chunks than sent; streams still open when the level ends are cut (counted apart, not
failed). The first --ramp seconds of each run are not counted: streams/s is the streams completed in the
rest, first-chunk latencies those of streams started in it (a stream still waiting when the level ends
counts its wait so far: the percentile is then a lower bound, marked `>=`).

During each gateway run a side probe asks `/healthz` and the signed-in LLM Connections list page once a
--probe-interval (each probe on its own keep-alive client, a probe never waiting for the previous one).
Prints per level: streams/s of both and their ratio, first-chunk p50/p99 and the gateway's overhead,
failures, the probes' p50/p99/max, the server's CPU (its whole process tree, /proc) per stream and per
relayed chunk, its peak RSS and threads, the client connections each server process held, and the
database connections open at peak (PostgreSQL: pg_stat_activity, polled from a connection of its own;
SQLite: the server's open handles on the database file); also the stub's, the client's and the machine's CPU.

    .venv/bin/python bench/streams.py [--concurrency 16,64,256,1024] [--seconds 30] [--chunks 50]
                                      [--stream-seconds 5] [--database-url postgres://...] [--json out.json]
    .venv/bin/python bench/streams.py --quick      # a few seconds: 8 streams of 5 chunks over 0.5 s
    scripts/with-postgres.sh sh -c '.venv/bin/python bench/streams.py --database-url "$TEST_DATABASE_URL"'
"""

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench.*` (and not the `gateway` app's name)

from bench.gateway import STUB_KEY, cpu_seconds, free_port  # noqa: E402
from bench.served import (  # noqa: E402
    app_env, load_average, logged_in_client, machine_busy, prepare, server_pids, serving, wait_for,
)

ENDPOINT = "bench-stream"
LIST_PAGE = "/settings/connections/"
SETTLE_SECONDS = 120  # longest wait between runs for the stub's streams to close and the server to go idle
FILES_EVERY = 3  # the server's open files (client connections, SQLite handles) every this many seconds
IDLE_CPU = 0.05  # share of a core under which the server counts as idle
NOISY_OTHERS = 25  # % of a core used by other processes during a run above which the output says so
PROBE_TIMEOUT = 30.0
TICK = 0.005  # the stub's timer: chunks go out at most this late, never early
CHUNK_EVENT = b"data: " + json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "delta": {"content": "token "}, "finish_reason": None}],
}, separators=(",", ":")).encode() + b"\n\n"
DONE_EVENT = b"data: [DONE]\n\n"
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()


def percentile(values: list[float], q: int) -> float:
    """Within the values seen (a small sample's p99 is its largest value, never beyond it)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def use_uvloop() -> str:
    """uvloop for the stub and the load client when installed (less of the shared cores for them), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


# --- The stub upstream ------------------------------------------------------------------------------------------


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Streams:
    """Every open stream of the stub, written by one timer: a tick sends each stream's chunks that are due."""

    def __init__(self, chunks: int, interval: float):
        self.chunks = chunks
        self.interval = interval
        self.base = time.monotonic()
        self.due: dict[int, list["StubProtocol"]] = defaultdict(list)
        self.counts = Counter()
        self.frame = chunked(CHUNK_EVENT)
        self.last = chunked(CHUNK_EVENT) + chunked(DONE_EVENT) + b"0\r\n\r\n"
        self.head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")

    def start(self, stream: "StubProtocol") -> None:
        self.counts["started"] += 1
        self.counts["open"] += 1
        stream.started, stream.sent = time.monotonic(), 0
        stream.transport.write(self.head)
        self.send(stream)

    def send(self, stream: "StubProtocol") -> None:
        if stream.closed:
            return
        stream.sent += 1
        if stream.sent >= self.chunks:
            stream.transport.write(self.last)
            stream.streaming = False
            self.counts["completed"] += 1
            self.counts["open"] -= 1
            stream.next_request()
            return
        stream.transport.write(self.frame)
        when = stream.started + stream.sent * self.interval
        self.due[math.ceil((when - self.base) / TICK)].append(stream)

    async def run(self) -> None:
        done = 0
        while True:
            now = math.floor((time.monotonic() - self.base) / TICK)
            for tick in range(done + 1, now + 1):
                for stream in self.due.pop(tick, ()):
                    self.send(stream)
            done = max(done, now)
            await asyncio.sleep(self.base + (done + 1) * TICK - time.monotonic())


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line[15:])
    return 0


class StubProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive: `"stream": true` chat requests stream, others get ANSWER, `GET /_stats` the counts."""

    def __init__(self, streams: Streams):
        self.streams = streams
        self.buffer = b""
        self.streaming = self.closed = False
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.streaming:
            self.streams.counts["aborted"] += 1
            self.streams.counts["open"] -= 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.next_request()

    def next_request(self) -> None:
        """Answer the buffered request, if it is whole (one at a time: the next waits for a stream's end)."""
        if self.streaming or self.closed:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        length = content_length(head)
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4:end + 4 + length]
        self.buffer = self.buffer[end + 4 + length:]
        if head.startswith(b"get /_stats"):
            self.answer(json.dumps(self.streams.counts).encode())
        elif b'"stream":true' in body.replace(b" ", b""):
            self.streaming = True
            self.streams.start(self)
        else:
            self.answer(ANSWER)

    def answer(self, content: bytes) -> None:
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(content), content))
        self.next_request()


def run_stub(port: int, chunks: int, stream_seconds: float) -> None:
    use_uvloop()

    async def serve() -> None:
        streams = Streams(chunks, stream_seconds / chunks)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: StubProtocol(streams), "127.0.0.1", port, backlog=4096)
        async with server:
            await streams.run()

    asyncio.run(serve())


def stub_counts(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/_stats", timeout=10).json()


# --- The load client ---------------------------------------------------------------------------------------------

# One record per stream: [started, first chunk (or None), ended (or None), chunks, outcome] (monotonic seconds,
# comparable across processes). Outcome: "ok", "cut" (open when the level ended), or why it failed.
STARTED, FIRST, ENDED, CHUNKS, OUTCOME = range(5)


class Answer:
    """One stream's answer as the load client reads it: the HTTP/1.1 framing undone by hand, the events counted."""

    __slots__ = ("record", "done", "status", "keep_alive", "chunked", "remaining", "events", "straddle", "tail",
                 "error")

    def __init__(self, record: list, done: asyncio.Future):
        self.record, self.done = record, done
        self.status, self.keep_alive, self.chunked, self.remaining = 0, True, False, 0
        self.events, self.straddle, self.tail, self.error = 0, False, b"", False

    def head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split(b" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"transfer-encoding" and value == b"chunked":
                self.chunked = True
            elif name == b"content-length":
                self.remaining = int(value)
            elif name == b"connection" and value == b"close":
                self.keep_alive = False

    def payload(self, data: bytes) -> None:
        record = self.record
        if record[FIRST] is None:
            record[FIRST] = time.monotonic()
        self.events += data.count(b"\n\n") + (self.straddle and data[:1] == b"\n")
        self.straddle = data.endswith(b"\n") and not data.endswith(b"\n\n")
        self.tail = (self.tail + data)[-32:]
        self.error = self.error or b'{"error"' in data

    def outcome(self, chunks: int) -> str:
        if self.status != 200:
            return f"status {self.status}"
        done = self.tail.endswith(DONE_EVENT)
        self.record[CHUNKS] = self.events - done
        if self.error:
            return "error event"
        return "fewer chunks" if not done or self.record[CHUNKS] < chunks else "ok"


class LoadConnection(asyncio.Protocol):
    """One keep-alive connection of the load client, read without an HTTP library: the load generator shares
    the machine's cores with the server it measures, so it should take as little of them as it can.

    Reads `Content-Length` and chunked answers (what the stub and the gateway send); `last` is when bytes last
    came, for the client's read timeout.
    """

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.answer: Answer | None = None
        self.buffer = b""
        self.in_body = False
        self.last = time.monotonic()
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.lost = True
        if self.answer is not None and not self.answer.done.done():
            self.answer.done.set_exception(ConnectionResetError("the server closed the connection"))

    def request(self, data: bytes, answer: Answer) -> None:
        self.answer, self.buffer, self.in_body, self.last = answer, b"", False, time.monotonic()
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        answer = self.answer
        if answer is None:
            return
        data = self.buffer + data if self.buffer else data
        self.buffer = b""
        if not self.in_body:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = data
                return
            answer.head(data[:end])
            self.in_body, data = True, data[end + 4:]
        if answer.chunked:
            self.chunks(answer, data)
        else:
            take = data[:answer.remaining]
            if take:
                answer.payload(take)
            answer.remaining -= len(take)
            if answer.remaining <= 0:
                self.finish(answer)

    def chunks(self, answer: Answer, data: bytes) -> None:
        """Chunked framing: `remaining` > 0 is data left of a chunk, -1 the CRLF after one, -2 the last CRLF."""
        position = 0
        while position < len(data):
            if answer.remaining > 0:
                piece = data[position:position + answer.remaining]
                answer.payload(piece)
                position += len(piece)
                answer.remaining -= len(piece)
                if answer.remaining == 0:
                    answer.remaining = -1
                continue
            line_end = data.find(b"\r\n", position)
            if line_end < 0:
                self.buffer = data[position:]
                return
            if answer.remaining == -1:  # the CRLF that ends a chunk's data
                answer.remaining, position = 0, line_end + 2
            elif answer.remaining == -2:  # the CRLF after the last chunk (no trailers)
                self.finish(answer)
                return
            else:
                size = int(data[position:line_end].split(b";", 1)[0], 16)
                answer.remaining, position = (size if size else -2), line_end + 2

    def finish(self, answer: Answer) -> None:
        self.answer = None
        if not answer.keep_alive:
            self.transport.close()
        if not answer.done.done():
            answer.done.set_result(None)


def run_load(pipe, url: str, headers: dict[str, str], body: bytes, concurrency: int, seconds: float,
             stream_seconds: float, chunks: int, timeout: float) -> None:
    """C clients, each starting its next stream when one ends, for `seconds`; sends (t0, records) down `pipe`.

    Each client keeps one connection open for its streams (a new one when the server closed it)."""
    use_uvloop()
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    request = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n"
               + "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n").encode() + body

    async def one(loop, connections: list, index: int, record: list) -> LoadConnection | None:
        connection = connections[index]
        try:
            if connection is None or connection.lost:
                try:
                    _, connection = await asyncio.wait_for(loop.create_connection(LoadConnection, host, port), 10)
                except (OSError, asyncio.TimeoutError):
                    record[OUTCOME] = "connect error"
                    return None
                connections[index] = connection
            answer = Answer(record, loop.create_future())
            connection.request(request, answer)
            try:
                await answer.done
            except ConnectionError as error:
                record[OUTCOME] = f"broke off ({type(error).__name__})"
                return None
            except asyncio.TimeoutError:
                record[OUTCOME] = "timeout"
                return None
            record[OUTCOME] = answer.outcome(chunks)
            return None if connection.lost else connection
        except asyncio.CancelledError:
            if connection is not None:
                connection.transport.close()
            raise
        finally:
            record[ENDED] = time.monotonic()  # a cut stream's too: when the level ended

    async def main() -> tuple[float, list[list]]:
        loop = asyncio.get_running_loop()
        records: list[list] = []
        connections: list[LoadConnection | None] = [None] * concurrency
        t0 = time.monotonic()
        stop = t0 + seconds

        async def client(index: int) -> None:
            await asyncio.sleep(stream_seconds * index / concurrency)
            while time.monotonic() < stop:
                record = [time.monotonic(), None, None, 0, "cut"]
                records.append(record)
                connections[index] = await one(loop, connections, index, record)

        async def read_timeouts() -> None:
            """A read that waits `timeout` seconds for bytes fails the stream (one look a second for all)."""
            while True:
                await asyncio.sleep(1.0)
                now = time.monotonic()
                for connection in connections:
                    if connection is not None and connection.answer is not None and now - connection.last > timeout:
                        done = connection.answer.done
                        if not done.done():
                            done.set_exception(asyncio.TimeoutError())
                        connection.transport.abort()

        tasks = [asyncio.create_task(client(index)) for index in range(concurrency)]
        watch = asyncio.create_task(read_timeouts())
        await asyncio.sleep(stop - time.monotonic())
        for task in [*tasks, watch]:
            task.cancel()
        await asyncio.gather(*tasks, watch, return_exceptions=True)
        for connection in connections:
            if connection is not None and connection.transport is not None:
                connection.transport.close()
        return t0, records

    pipe.send(("ready", os.getpid()))
    pipe.send(asyncio.run(main()))


# --- Measuring the server ---------------------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[float, int, int]:
    """CPU seconds (user+system), RSS kB and threads of one process; zeros when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0, 0
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return cpu, int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024, int(fields[17])


def established_inodes(port: int) -> set[str]:
    """Socket inodes of connections established to 127.0.0.1:`port` (the server's side)."""
    inodes = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def open_files(pid: int) -> list[str]:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return []
    targets = []
    for name in names:
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            pass
    return targets


class Sampler(threading.Thread):
    """Once a second: the server tree's RSS and threads, client connections per process, database connections."""

    def __init__(self, pid: int, port: int, database_url: str):
        super().__init__(daemon=True)
        self.pid, self.port, self.database_url = pid, port, database_url
        self.stopping = threading.Event()
        self.rss_kb = self.threads = self.database_connections = self.connections = 0
        self.spread: list[int] = []
        self.pg = None
        if database_url.startswith(("postgres://", "postgresql://")):
            import psycopg

            self.pg = psycopg.connect(database_url, autocommit=True)
            self.sqlite_file = None
        else:
            self.sqlite_file = "/" + urlsplit(database_url).path.lstrip("/")

    def run(self) -> None:
        count = 0
        while not self.stopping.wait(1.0):
            # Listing every open file costs ~0.1 s of CPU at 1,024 streams: every few seconds is enough.
            self.sample(files=count % FILES_EVERY == 0)
            count += 1

    def sample(self, files: bool) -> None:
        pids = server_pids(self.pid)
        stats = [proc_stat(pid) for pid in pids]
        self.rss_kb = max(self.rss_kb, sum(rss for _, rss, _ in stats))
        self.threads = max(self.threads, sum(threads for _, _, threads in stats))
        if self.pg is not None:
            row = self.pg.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()
            self.database_connections = max(self.database_connections, row[0])
        if not files:
            return
        inodes = established_inodes(self.port)
        opened = {pid: open_files(pid) for pid in pids}
        spread = [sum(1 for f in opened[pid] if f.startswith("socket:[") and f[8:-1] in inodes) for pid in pids]
        if sum(spread) > self.connections:  # per worker: the root (master) holds none, unless it is alone
            self.connections, self.spread = sum(spread), spread[1:] if len(spread) > 1 else spread
        if self.sqlite_file:
            handles = sum(1 for targets in opened.values() for f in targets if f == self.sqlite_file)
            self.database_connections = max(self.database_connections, handles)

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        if self.pg is not None:
            self.pg.close()


class Probes:
    """`/healthz` and the list page once every `interval` on their own clients until stopped: (ms, ok) each."""

    def __init__(self, url: str, page_client: httpx.Client, interval: float):
        self.clients = {"/healthz": httpx.Client(base_url=url, timeout=PROBE_TIMEOUT), "list page": page_client}
        self.paths = {"/healthz": "/healthz", "list page": LIST_PAGE}
        self.interval = interval
        self.results: dict[str, list[tuple[float, bool]]] = {name: [] for name in self.clients}
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=2 * int(PROBE_TIMEOUT / interval + 1))
        self.thread = threading.Thread(target=self.run, daemon=True)

    def probe(self, name: str) -> None:
        started = time.perf_counter()
        try:
            ok = self.clients[name].get(self.paths[name]).status_code == 200
        except httpx.HTTPError:
            ok = False
        self.results[name].append(((time.perf_counter() - started) * 1000, ok))

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            for name in self.clients:
                self.pool.submit(self.probe, name)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.pool.shutdown(wait=True)
        self.clients["/healthz"].close()


# --- A level ----------------------------------------------------------------------------------------------------


def run_clients(target: tuple[str, dict], options: argparse.Namespace, concurrency: int, server: int | None,
                watch: dict) -> dict:
    """One run of the load client against `target`; its figures, with CPU over the counted window."""
    url, headers = target
    body = json.dumps({"model": ENDPOINT, "messages": [{"role": "user", "content": "Hi"}], "stream": True}).encode()
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    client = context.Process(target=run_load, args=(theirs, url, {**headers, "Content-Type": "application/json"},
                                                    body, concurrency, options.seconds, options.stream_seconds,
                                                    options.chunks, options.timeout), daemon=True)
    client.start()
    assert ours.recv()[0] == "ready"
    started = time.monotonic()  # within milliseconds of the client's t0 (its session is made; no stream yet)
    pids = {"stub": watch["stub"], "client": client.pid}
    time.sleep(max(0.0, started + options.ramp - time.monotonic()))
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    before["bench"] = proc_stat(os.getpid())[0]  # this process alone (its children are the stub and the client)
    if server:
        before["server"] = cpu_seconds(server)
    busy_before, jiffies_before = machine_busy()
    window_start = time.monotonic()
    time.sleep(max(0.0, started + options.seconds - time.monotonic()))
    window_end = time.monotonic()
    used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    used["bench"] = proc_stat(os.getpid())[0] - before["bench"]
    if server:
        used["server"] = cpu_seconds(server) - before["server"]
    busy_after, jiffies_after = machine_busy()
    t0, records = ours.recv()
    client.join()
    figures = summarise(records, t0 + options.ramp, t0 + options.seconds, options.chunks)
    seconds = window_end - window_start
    figures["cpu_percent"] = {name: 100 * value / seconds for name, value in used.items()}
    machine = 100 * (busy_after - busy_before) / max(1, jiffies_after - jiffies_before) * os.cpu_count()
    figures["machine_busy_percent"] = machine
    # Whatever else ran on the machine meanwhile (kernel work on loopback included): figures with much of it are noisy.
    figures["cpu_percent"]["others"] = max(0.0, machine - sum(figures["cpu_percent"].values()))
    if server:
        completed = figures["completed_in_window"]
        figures["server_ms_per_stream"] = 1000 * used["server"] / completed if completed else None
        figures["server_ms_per_chunk"] = 1000 * used["server"] / (completed * options.chunks) if completed else None
    return figures


def summarise(records: list[list], window_start: float, window_end: float, chunks: int) -> dict:
    """Streams/s over the window, first-chunk percentiles of the streams started in it, failures of the whole run."""
    completed = [r for r in records if r[OUTCOME] == "ok" and window_start <= r[ENDED] <= window_end]
    counted = [r for r in records if r[STARTED] >= window_start]
    waits = [(r[FIRST] if r[FIRST] is not None and r[FIRST] <= window_end else window_end) - r[STARTED]
             for r in counted]
    waiting = sum(1 for r in counted if r[FIRST] is None or r[FIRST] > window_end)
    failures = Counter(r[OUTCOME] for r in records if r[OUTCOME] not in ("ok", "cut"))
    durations = [r[ENDED] - r[STARTED] for r in completed]
    # Over the whole run, ramp included: on a server that queues, the first clients wait longest.
    longest = max(((r[FIRST] or r[ENDED] or window_end) - r[STARTED] for r in records), default=0.0)
    return {
        "streams_per_second": len(completed) / (window_end - window_start),
        "completed_in_window": len(completed),
        "first_chunk_ms": {"p50": 1000 * percentile(waits, 50) if waits else None,
                           "p99": 1000 * percentile(waits, 99) if waits else None,
                           "lower_bound": waiting > 0, "waiting_at_end": waiting, "samples": len(waits),
                           "longest_wait_ms": 1000 * longest},
        "stream_seconds_p50": percentile(durations, 50) if durations else None,
        "ended": sum(1 for r in records if r[OUTCOME] != "cut"),
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "cut": sum(1 for r in records if r[OUTCOME] == "cut"),
        "chunks_received": sum(r[CHUNKS] for r in records if r[OUTCOME] == "ok"),
    }


def settle(stub_url: str, server: int) -> None:
    """Wait until the stub has no stream open and the server is idle: it finished what cut clients left queued."""
    deadline = time.monotonic() + SETTLE_SECONDS
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:
        before = cpu_seconds(server)
        time.sleep(0.5)
        idle = cpu_seconds(server) - before < 0.5 * IDLE_CPU and stub_counts(stub_url).get("open", 0) == 0
        quiet = quiet + 1 if idle else 0


def probe_figures(results: list[tuple[float, bool]]) -> dict:
    latencies = [ms for ms, _ in results]
    return {"p50": percentile(latencies, 50) if latencies else None,
            "p99": percentile(latencies, 99) if latencies else None,
            "max": max(latencies) if latencies else None,
            "failed": sum(1 for _, ok in results if not ok), "count": len(results)}


def run_level(concurrency: int, options: argparse.Namespace, served, stub_url: str, stub_pid: int,
              page_client: httpx.Client) -> dict:
    direct = (f"{stub_url}/v1/chat/completions", {"Authorization": f"Bearer {STUB_KEY}"})
    gateway = (f"{served.url}/gateway/v1/chat/completions", served.auth)
    watch = {"stub": stub_pid}
    settle(stub_url, served.pid)
    level = {"concurrency": concurrency, "direct": run_clients(direct, options, concurrency, None, watch)}
    settle(stub_url, served.pid)
    sampler = Sampler(served.pid, int(served.env["PORT"]), served.env["DATABASE_URL"])
    probes = Probes(served.url, page_client, options.probe_interval)
    sampler.start()
    probes.start()
    try:
        level["gateway"] = run_clients(gateway, options, concurrency, served.pid, watch)
    finally:
        probes.stop()
        sampler.stop()
    level["probes"] = {name: probe_figures(results) for name, results in probes.results.items()}
    level["server"] = {"peak_rss_mb": sampler.rss_kb / 1024, "peak_threads": sampler.threads,
                       "peak_client_connections": sampler.connections, "connections_per_process": sampler.spread,
                       "peak_database_connections": sampler.database_connections}
    return level


# --- Output -----------------------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_level(level: dict, options: argparse.Namespace) -> None:
    d, g, server = level["direct"], level["gateway"], level["server"]
    print(f"\nconcurrency {level['concurrency']}:")
    for name, run in (("direct ", d), ("gateway", g)):
        first = run["first_chunk_ms"]
        bound = ">=" if first["lower_bound"] else ""
        print(f"  {name}  {run['streams_per_second']:7.2f} streams/s  first chunk p50 {bound}{ms(first['p50'])} ms "
              f"p99 {bound}{ms(first['p99'])} ms  stream p50 {ms(run['stream_seconds_p50'])} s  "
              f"failed {run['failed']} of {run['ended']}  cut {run['cut']}  waiting at end {first['waiting_at_end']}  "
              f"longest wait {first['longest_wait_ms'] / 1000:.1f} s")
        for reason, count in sorted(run["failures"].items()):
            print(f"    failed: {count} {reason}")
    ratio = g["streams_per_second"] / d["streams_per_second"] if d["streams_per_second"] else 0.0
    overhead_p50 = (g["first_chunk_ms"]["p50"] or 0) - (d["first_chunk_ms"]["p50"] or 0)
    overhead_p99 = (g["first_chunk_ms"]["p99"] or 0) - (d["first_chunk_ms"]["p99"] or 0)
    level["ratio"], level["first_chunk_overhead_ms"] = ratio, {"p50": overhead_p50, "p99": overhead_p99}
    print(f"  ratio {ratio:.2f}; first-chunk overhead p50 {overhead_p50:+.1f} ms, p99 {overhead_p99:+.1f} ms")
    for name, probe in level["probes"].items():
        print(f"  probe {name:<9} p50 {ms(probe['p50'])} ms  p99 {ms(probe['p99'])} ms  max {ms(probe['max'])} ms  "
              f"failed {probe['failed']} of {probe['count']}")
    spread = "/".join(str(count) for count in server["connections_per_process"]) or "0"
    print(f"  server CPU {g['cpu_percent']['server']:.0f}% of a core: {ms(g['server_ms_per_stream'])} ms/stream, "
          f"{g['server_ms_per_chunk'] or 0:.3f} ms/chunk; peak RSS {server['peak_rss_mb']:.0f} MB, "
          f"{server['peak_threads']} threads; client connections per process {spread}; "
          f"database connections at peak {server['peak_database_connections']}")
    shares = ", ".join(f"{name} {d['cpu_percent'][name]:.0f} / {g['cpu_percent'][name]:.0f}"
                       for name in ("stub", "client", "bench", "others"))
    print(f"  CPU % of a core, direct / gateway: {shares}, machine {d['machine_busy_percent']:.0f} / "
          f"{g['machine_busy_percent']:.0f} (of {100 * os.cpu_count()})")
    others = max(d["cpu_percent"]["others"], g["cpu_percent"]["others"])
    if others > NOISY_OTHERS:
        print(f"  note: other processes used up to {others:.0f}% of a core meanwhile: these figures are noisy")


# --- Report (bench/surfaces.py --streams writes it into docs/benchmarks.md) ----------------------------------

# What the gateway must do under make run's defaults, by concurrency: least share of the direct rate, most
# first-chunk overhead p50 (ms), most /healthz p99 (ms), most list page p99 (ms), most server memory (MB).
TARGETS = {256: (0.97, 10, 100, None, None), 1024: (0.8, 50, 250, 1000, 500)}


def verdicts(results: dict) -> list[str]:
    lines = []
    for level in results["levels"]:
        target = TARGETS.get(level["concurrency"])
        if not target:
            continue
        least_ratio, most_overhead, most_healthz, most_page, most_memory = target
        checks = [(f"failed {level['gateway']['failed']}", level["gateway"]["failed"] == 0, "0"),
                  (f"{level['ratio']:.2f} of direct", level["ratio"] >= least_ratio, f"≥ {least_ratio}"),
                  (f"first-chunk overhead p50 {level['first_chunk_overhead_ms']['p50']:+.1f} ms",
                   level["first_chunk_overhead_ms"]["p50"] <= most_overhead, f"≤ {most_overhead} ms"),
                  (f"/healthz p99 {ms(level['probes']['/healthz']['p99'])} ms",
                   (level["probes"]["/healthz"]["p99"] or 0) <= most_healthz, f"≤ {most_healthz} ms")]
        if most_page:
            checks.append((f"list page p99 {ms(level['probes']['list page']['p99'])} ms",
                           (level["probes"]["list page"]["p99"] or 0) <= most_page, f"≤ {most_page} ms"))
        if most_memory:
            checks.append((f"server memory {level['server']['peak_rss_mb']:.0f} MB",
                           level["server"]["peak_rss_mb"] <= most_memory, f"≤ {most_memory} MB"))
        text = "; ".join(f"{figure} (target {goal}): {'met' if ok else '**missed**'}" for figure, ok, goal in checks)
        lines.append(f"- {level['concurrency']:,} concurrent streams: {text}")
    return lines


def table(runs: list[tuple[str, dict]]) -> str:
    rows = ["| server | streams | direct /s | gateway /s | ratio | first chunk p50 / p99 ms (overhead p50) | failed "
            "| /healthz p50 / p99 ms | list page p50 / p99 ms | server CPU ms / stream, / chunk | peak RSS MB "
            "| DB connections at peak |",
            "|---|---:|---:|---:|---:|---|---:|---|---|---|---:|---:|"]
    for server, results in runs:
        for level in results["levels"]:
            d, g, probes, peak = level["direct"], level["gateway"], level["probes"], level["server"]
            bound = "≥" if g["first_chunk_ms"]["lower_bound"] else ""
            rows.append(
                f"| {server} | {level['concurrency']:,} | {d['streams_per_second']:.1f} | {g['streams_per_second']:.1f} "
                f"| {level['ratio']:.2f} | {bound}{ms(g['first_chunk_ms']['p50'])} / {bound}{ms(g['first_chunk_ms']['p99'])} "
                f"({level['first_chunk_overhead_ms']['p50']:+.1f}) | {g['failed']} of {g['ended']} "
                f"| {ms(probes['/healthz']['p50'])} / {ms(probes['/healthz']['p99'])} "
                f"| {ms(probes['list page']['p50'])} / {ms(probes['list page']['p99'])} "
                f"| {ms(g['server_ms_per_stream'])} / {g['server_ms_per_chunk'] or 0:.3f} | {peak['peak_rss_mb']:.0f} "
                f"| {peak['peak_database_connections']} |")
    return "\n".join(rows)


def plot(runs: list[tuple[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate, first, healthz) = plt.subplots(1, 3, figsize=(13, 4.2), dpi=100)
    for (server, results), marker in zip(runs, "os^"):
        levels = results["levels"]
        x = [level["concurrency"] for level in levels]
        rate.plot(x, [level["ratio"] for level in levels], marker=marker, label=server)
        first.plot(x, [max(level["first_chunk_overhead_ms"]["p50"], 0.1) for level in levels], marker=marker,
                   label=server)
        healthz.plot(x, [level["probes"]["/healthz"]["p99"] or 0 for level in levels], marker=marker, label=server)
    rate.axhline(0.97, color="grey", linewidth=0.8, linestyle=":")
    rate.axhline(0.8, color="grey", linewidth=0.8, linestyle=":")
    for axes, title, ylabel in ((rate, "streams/s, share of direct", "gateway / direct"),
                                (first, "first-chunk overhead over direct, p50", "ms (log)"),
                                (healthz, "/healthz p99 during the load", "ms")):
        axes.set_xscale("log", base=2)
        axes.set_xlabel("concurrent streams")
        axes.set_ylabel(ylabel)
        axes.set_title(title, fontsize="medium")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="x-small")
    rate.set_ylim(0, 1.05)
    first.set_yscale("log")
    healthz.set_ylim(bottom=0)
    figure.suptitle("Streams relayed by the gateway (50 chunks over 5 s each) against the same streams read directly")
    figure.tight_layout()
    figure.savefig(path)


def create_endpoint(served, stub_url: str) -> None:
    """A connection to the stub and a chat endpoint on it, through the API as a user would."""
    httpx.post(f"{served.url}/api/v1/connections/", headers=served.auth, json={
        "name": "bench", "provider": "openai", "auth_method": "api_key",
        "secrets": {"api_key": STUB_KEY}, "config": {"base_url": f"{stub_url}/v1"}}).raise_for_status()
    httpx.post(f"{served.url}/api/v1/endpoints/", headers=served.auth, json={
        "name": ENDPOINT, "connection": "bench", "model": "gpt-4o-mini", "task": "chat"}).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="16,64,256,1024", help="levels: concurrent streams, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each run (direct, then gateway)")
    parser.add_argument("--ramp", type=float, help="seconds not counted at the start of a run "
                        "(default: --stream-seconds)")
    parser.add_argument("--chunks", type=int, default=50, help="chunks per stream")
    parser.add_argument("--stream-seconds", type=float, default=5.0, help="a stream's length")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without a byte before a stream fails")
    parser.add_argument("--probe-interval", type=float, default=1.0)
    parser.add_argument("--database-url", help="serve from this (PostgreSQL) database instead of a throwaway SQLite")
    parser.add_argument("--server-command", help="serve with this command instead of make run's gunicorn (run in "
                        "the repository with the bench's environment, PORT included), e.g. to compare servers")
    parser.add_argument("--server-log", type=Path, help="append the server's output to this file")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--quick", action="store_true", help="a few seconds: 8 streams of 5 chunks over 0.5 s")
    options = parser.parse_args()
    if options.quick:
        options.concurrency, options.seconds, options.chunks, options.stream_seconds = "8", 3.0, 5, 0.5
        options.probe_interval = 0.5
    if options.ramp is None:
        options.ramp = options.stream_seconds
    if options.ramp >= options.seconds:
        parser.error("--seconds must be longer than --ramp (default: --stream-seconds)")
    levels = [int(level) for level in options.concurrency.split(",")]

    stub_port, app_port = free_port(), free_port()
    stub = multiprocessing.get_context("spawn").Process(
        target=run_stub, args=(stub_port, options.chunks, options.stream_seconds), daemon=True)
    stub.start()
    stub_url = f"http://127.0.0.1:{stub_port}"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-streams-") as directory:
            env = app_env(directory, app_port, options.database_url)
            token = prepare(env)
            command = shlex.split(options.server_command) if options.server_command else None
            with serving(env, token, command, options.server_log) as served:
                wait_for(f"{stub_url}/_stats")
                create_endpoint(served, stub_url)
                page_client = logged_in_client(served.url)
                database = "PostgreSQL" if env["DATABASE_URL"].startswith("postgres") else "SQLite"
                print(f"stub: {options.chunks} chunks over {options.stream_seconds:g} s a stream "
                      f"({len(CHUNK_EVENT)} B events; {loop_name()} stub and client); {options.seconds:g} s a run, "
                      f"the first {options.ramp:g} s not counted; {os.cpu_count()} cores, Python "
                      f"{platform.python_version()}, {database}; server: "
                      f"{options.server_command or 'make run (gunicorn, config/gunicorn.py)'}; "
                      f"load average {load_average()}", flush=True)
                results = {"options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
                           "cores": os.cpu_count(), "database": database, "levels": []}
                for concurrency in levels:
                    level = run_level(concurrency, options, served, stub_url, stub.pid, page_client)
                    print_level(level, options)
                    sys.stdout.flush()
                    results["levels"].append(level)
                results["stub"] = stub_counts(stub_url)
                print(f"\nstub: {results['stub'].get('started', 0)} streams started, "
                      f"{results['stub'].get('completed', 0)} completed, {results['stub'].get('aborted', 0)} "
                      f"closed early by their client; load average {load_average()}")
                page_client.close()
        if options.json:
            options.json.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        stub.terminate()


if __name__ == "__main__":
    main()
