"""Benchmark: the gateway's overhead over calling the provider directly. Not a test.

Starts a stub upstream (an asyncio HTTP/1.1 server in its own process answering OpenAI chat completions,
optionally after --delay ms) and the app served as `make run` serves it (gunicorn with uvicorn workers, throwaway
SQLite), then sends chat calls directly to the stub and through `/gateway/v1/chat/completions`,
interleaved in rounds, sequentially and with 16 concurrent clients (keep-alive, bench/lean_client.py, on
threads). Prints p50/p99 of both, the overhead, throughput and the gateway's CPU milliseconds per request (from
/proc). A third path calls an endpoint split over three destinations (three connections to the same stub) for
the cost of routing.

    .venv/bin/python bench/gateway.py [--requests 2000] [--concurrency 16] [--delay 0]
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench.*` (and not the `gateway` app's name)

from bench.lean_client import LeanClient  # noqa: E402
from bench.served import app_env, manage, prepare, server_pids, serving, wait_for, wait_until_quiet  # noqa: E402

STUB_KEY = "sk-bench-0123456789abcdefghijklmnop"
CHAT = {"model": "bench-chat", "messages": [{"role": "user", "content": "Hi"}]}
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_stub(port: int, delay: float) -> None:
    """A minimal keep-alive HTTP/1.1 server: every request gets ANSWER (after `delay` seconds)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if delay:
                    await asyncio.sleep(delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (gunicorn master and workers)."""
    total = 0.0
    for each in server_pids(pid):
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def split_url(url: str) -> tuple[str, str]:
    """`http://host:port/path` as (`http://host:port`, `/path`)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path


def timed_calls(url: str, headers: dict, count: int, concurrency: int, body: dict = CHAT) -> tuple[list[float], float]:
    """Latencies (ms) of `count` chat calls spread over `concurrency` keep-alive clients, and the wall time."""
    latencies: list[float] = []
    lock = threading.Lock()

    base, path = split_url(url)

    def worker(share: int) -> None:
        mine = []
        with LeanClient(base, headers=headers) as client:
            request = client.build("POST", path, json_body=body)
            for _ in range(share):
                started = time.perf_counter()
                response = client.send(request)
                mine.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(count // concurrency,)) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started


def server_cpu_ns(pid: int) -> int:
    """CPU time (ns) of every thread of the server's processes, as the scheduler accounts it
    (/proc/.../schedstat): exact enough to time one call, where /proc/<pid>/stat counts 10 ms ticks."""
    total = 0
    for each in server_pids(pid):
        for task in Path(f"/proc/{each}/task").glob("*/schedstat"):
            try:
                total += int(task.read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass  # a thread that just ended
    return total


def alternated_calls(url: str, calls: tuple[tuple[dict, dict], tuple[dict, dict]], count: int,
                     server_pid: int) -> tuple[tuple[list[float], list[float]], tuple[list[float], list[float]]]:
    """Latencies and server CPU (ms) of `count` calls of each kind (headers, body) from one keep-alive client,
    the two kinds alternating call by call (ABBA: neither always goes first), so that both see the machine as
    it was at that moment. A call's CPU is the server's between its request and the next: work a call leaves
    for later (the usage writer's batches) lands on either kind alike."""
    latencies: tuple[list[float], list[float]] = ([], [])
    cpu: tuple[list[float], list[float]] = ([], [])
    base, path = split_url(url)
    clients = [LeanClient(base, headers=headers) for headers, _ in calls]
    requests = [client.build("POST", path, json_body=body) for client, (_, body) in zip(clients, calls)]
    try:
        for index in range(count):
            for which in ((0, 1) if index % 2 == 0 else (1, 0)):
                before = server_cpu_ns(server_pid)
                started = time.perf_counter()
                response = clients[which].send(requests[which])
                latencies[which].append((time.perf_counter() - started) * 1000)
                cpu[which].append((server_cpu_ns(server_pid) - before) / 1e6)
                assert response.status_code == 200, response.text
    finally:
        for client in clients:
            client.close()
    return latencies, cpu


def alternated_difference(label: str, template: str, latencies: tuple[list[float], list[float]],
                          cpu: tuple[list[float], list[float]]) -> str:
    """The second kind's p50 latency and median CPU over the first's (`template` words them from `latency` and
    `server`), and the same in each quarter of the calls."""
    quarter = len(latencies[0]) // 4

    def differences(values: tuple[list[float], list[float]]) -> tuple[float, list[float]]:
        whole = statistics.median(values[1]) - statistics.median(values[0])
        return whole, [statistics.median(values[1][i * quarter:(i + 1) * quarter])
                       - statistics.median(values[0][i * quarter:(i + 1) * quarter]) for i in range(4)]

    (latency, latency_quarters), (server, server_quarters) = differences(latencies), differences(cpu)
    return (f"  {label} p50 {statistics.median(latencies[1]):7.2f} ms: "
            + template.format(latency=f"{latency:+.3f}", server=f"{server:+.3f}")
            + f" (medians; {len(latencies[1])} calls of each, "
            f"alternated one by one; each quarter of them {min(latency_quarters):+.3f} to "
            f"{max(latency_quarters):+.3f} ms and {min(server_quarters):+.3f} to {max(server_quarters):+.3f} ms of CPU)")


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per mode and path")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.0, help="stub answer delay in ms")
    parser.add_argument("--limits", action="store_true",
                        help="also call with a token that has a rate and a token budget (never reached), so every "
                             "call is counted, interleaved with the same calls unlimited: the limits' cost")
    options = parser.parse_args()

    stub_port, app_port = free_port(), free_port()
    stub = multiprocessing.Process(target=run_stub, args=(stub_port, options.delay / 1000), daemon=True)
    stub.start()
    stub_url = f"http://127.0.0.1:{stub_port}"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-gateway-") as directory:
            env = app_env(directory, app_port)
            token = prepare(env)
            with serving(env, token) as served:
                app_url = served.url
                wait_for(stub_url)
                auth = served.auth
                httpx.post(f"{app_url}/api/v1/connections/", headers=auth, json={
                    "name": "bench", "provider": "openai", "auth_method": "api_key",
                    "secrets": {"api_key": STUB_KEY}, "config": {"base_url": f"{stub_url}/v1"}}).raise_for_status()
                httpx.post(f"{app_url}/api/v1/endpoints/", headers=auth, json={
                    "name": "bench-chat", "connection": "bench", "model": "gpt-4o-mini", "task": "chat"}).raise_for_status()
                for name in ("bench-b", "bench-c"):
                    httpx.post(f"{app_url}/api/v1/connections/", headers=auth, json={
                        "name": name, "provider": "openai", "auth_method": "api_key",
                        "secrets": {"api_key": STUB_KEY}, "config": {"base_url": f"{stub_url}/v1"}}).raise_for_status()
                httpx.post(f"{app_url}/api/v1/endpoints/", headers=auth, json={
                    "name": "bench-split", "task": "chat", "destinations": [
                        {"connection": name, "model": "gpt-4o-mini", "weight": weight}
                        for name, weight in (("bench", 34), ("bench-b", 33), ("bench-c", 33))]}).raise_for_status()
                direct = (f"{stub_url}/v1/chat/completions", {"Authorization": f"Bearer {STUB_KEY}"})
                gateway = (f"{app_url}/gateway/v1/chat/completions", auth)
                split = (f"{app_url}/gateway/v1/chat/completions", auth)
                paths = {"direct": direct, "gateway": gateway, "split": split}
                if options.limits:
                    limited = manage(env, "create_api_token", "admin", "--requests-per-minute", "1000000",
                                     "--token-budget", str(10**15)).strip()
                    paths["limited"] = (gateway[0], {"Authorization": f"Bearer {limited}"})
                    timed_calls(*paths["limited"], 200, 4, CHAT)
                split_body = {**CHAT, "model": "bench-split"}
                timed_calls(*gateway, 200, 4)  # warm up workers, pools and caches
                timed_calls(*split, 200, 4, split_body)
                timed_calls(*direct, 200, 4)

                print(f"stub delay {options.delay:g} ms, {options.requests} requests per path and mode, "
                      f"{options.rounds} interleaved rounds, {os.cpu_count()} cores"
                      + (", and calls counted against a rate and a token budget" if options.limits else ""))
                for concurrency in (1, options.concurrency):
                    quiet = wait_until_quiet()
                    results = {name: ([], 0.0) for name in paths}
                    cpu = dict.fromkeys(paths, 0.0)
                    share = options.requests // options.rounds
                    round_overheads, round_splits, round_limits, round_limits_cpu = [], [], [], []
                    for _ in range(options.rounds):
                        round_p50, round_cpu = {}, {}
                        for name, (url, headers) in paths.items():
                            before = cpu_seconds(served.pid) if name != "direct" else 0
                            body = split_body if name == "split" else CHAT
                            latencies, wall = timed_calls(url, headers, share, concurrency, body)
                            if name != "direct":
                                round_cpu[name] = cpu_seconds(served.pid) - before
                                cpu[name] += round_cpu[name]
                            results[name] = (results[name][0] + latencies, results[name][1] + wall)
                            round_p50[name] = percentile(latencies, 50)
                        round_overheads.append(round_p50["gateway"] - round_p50["direct"])
                        round_splits.append(round_p50["split"] - round_p50["gateway"])
                        if "limited" in round_p50:
                            round_limits.append(round_p50["limited"] - round_p50["gateway"])
                            round_limits_cpu.append((round_cpu["limited"] - round_cpu["gateway"]) * 1000 / share)
                    (d, d_wall), (g, g_wall), (sp, _) = results["direct"], results["gateway"], results["split"]
                    print(f"\nconcurrency {concurrency}: (before it, {quiet})")
                    for name, values, wall in (("direct ", d, d_wall), ("gateway", g, g_wall)):
                        print(f"  {name}  p50 {percentile(values, 50):7.2f} ms  p99 {percentile(values, 99):7.2f} ms"
                              f"  {len(values) / wall:8.0f} req/s")
                    print(f"  overhead p50 {percentile(g, 50) - percentile(d, 50):+.2f} ms, "
                          f"p99 {percentile(g, 99) - percentile(d, 99):+.2f} ms; "
                          f"throughput ratio {(len(g) / g_wall) / (len(d) / d_wall):.2f}; "
                          f"gateway CPU {cpu['gateway'] * 1000 / len(g):.2f} ms/request")
                    print(f"  overhead p50 round by round: {min(round_overheads):+.2f} to {max(round_overheads):+.2f} ms")
                    # Each round's split and one-destination calls ran back to back: the median of the rounds'
                    # differences is steadier than the difference of the pooled medians.
                    if concurrency == 1:
                        # A split's or the limits' extra cost is tens of microseconds: far below how much a
                        # round's p50 drifts from the next one's on a shared machine. Alternated call by call,
                        # both kinds see the same drift, which the difference of their medians then cancels.
                        print(f"  the rounds' medians of differences: split {statistics.median(round_splits):+.3f} ms "
                              f"({min(round_splits):+.3f} to {max(round_splits):+.3f})")
                        split_calls = alternated_calls(gateway[0], ((gateway[1], CHAT), (gateway[1], split_body)),
                                                       options.requests, served.pid)
                        print(alternated_difference(
                            "three-destination split",
                            "{latency} ms over one destination, {server} ms of server CPU a call", *split_calls))
                        if "limited" in paths:
                            limited_calls = alternated_calls(
                                gateway[0], ((gateway[1], CHAT), (paths["limited"][1], CHAT)), options.requests,
                                served.pid)
                            print(alternated_difference(
                                "limits (a rate and a budget, counted on every call)",
                                "{latency} ms and {server} ms of server CPU a call over the same calls unlimited",
                                *limited_calls))
                    else:
                        print(f"  three-destination split p50 {percentile(sp, 50):7.2f} ms: "
                              f"{statistics.median(round_splits):+.3f} ms over one destination (median of "
                              f"{len(round_splits)} rounds' differences, {min(round_splits):+.3f} to "
                              f"{max(round_splits):+.3f})")
                    if "limited" in results:
                        limited_latencies = results["limited"][0]
                        print(f"  in the rounds, limits p50 "
                              f"{percentile(limited_latencies, 50):7.2f} ms: "
                              f"{percentile(limited_latencies, 50) - percentile(g, 50):+.3f} ms and "
                              f"{(cpu['limited'] / len(limited_latencies) - cpu['gateway'] / len(g)) * 1000:+.3f} ms "
                              f"of server CPU a call over the same calls unlimited")
                        print(f"    paired, the median of {len(round_limits)} rounds' differences: p50 "
                              f"{statistics.median(round_limits):+.3f} ms ({min(round_limits):+.3f} to "
                              f"{max(round_limits):+.3f}), server CPU {statistics.median(round_limits_cpu):+.3f} ms "
                              f"a call ({min(round_limits_cpu):+.3f} to {max(round_limits_cpu):+.3f})")
    finally:
        stub.terminate()


if __name__ == "__main__":
    main()
