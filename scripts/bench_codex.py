#!/usr/bin/env python3
"""Time to the first token and Codex CPU per request, with the real Codex, against two floors.

    .venv/bin/python scripts/bench_codex.py                        # ~2 min
    .venv/bin/python scripts/bench_codex.py --before OLD/src       # also a version of old

Everything runs against one local mock of the Responses API (tests/mock_responses.py), which
answers every request with its first text delta FIRST_DELTA_MS after the request arrives
(the model "thinking"), then the rest of the answer. Each figure is taken at three loads: one
request at a time (`sequential`), 16 at once, 64 at once. Three ways are measured in the same
run, each against the same mock:

- `mock floor`: this process asks the mock itself (POST /v1/responses, streamed); time to the
  first `response.output_text.delta`. Nothing can answer sooner.
- `warm app-server floor`: app-server children (the pinned Codex, native binary, the proxy's
  own lean command line and Codex home), started, initialized and with a thread started
  before the clock starts; time from `turn/start` to the first agent message delta. What a
  warm child costs at the least.
- `proxy`: `python -m codex_openai_proxy` (its own process, `PROXY_MAX_CONCURRENT` 64, warm
  spares as set) asked over HTTP, streamed; time to the first content chunk (not the role
  chunk). Sequential requests wait for the spares to be back between them, as a user's do.

CPU per request is the Codex processes' user + system time per request, read from the proxy
process's `cutime`/`cstime` (/proc/PID/stat: every reaped child's time, its own children's
included) over the level. Peak PSS is the largest sum, sampled every 100 ms during the
64-stream level, of the Pss (/proc/PID/smaps_rollup) of the proxy and every process under it.
Targets (docs/benchmarks.md) are ratios to the floors measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from codex_openai_proxy.app_server_protocol import INITIALIZED, encode, initialize_request  # noqa: E402
from codex_openai_proxy.catalog import ModelCatalog  # noqa: E402
from codex_openai_proxy.child import ChildLaunch  # noqa: E402
from codex_openai_proxy.codex_setup import CodexLocator  # noqa: E402
from codex_openai_proxy.engines.app_server import child_launch  # noqa: E402
from codex_openai_proxy.settings import Settings  # noqa: E402

from conftest import listening_url  # noqa: E402
from mock_responses import MockResponses, codex_home, serve_mock  # noqa: E402

API_KEY = "bench-key"
MODEL = "gpt-5.5"
FIRST_DELTA_MS = 150
ANSWER = tuple(f"word{i} " for i in range(8))
LOADS = {"sequential": 1, "16 streams": 16, "64 streams": 64}
CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


@dataclass
class Level:
    name: str
    ttfb_ms: list[float] = field(default_factory=list)
    cpu_ms_per_request: float = float("nan")
    errors: list[str] = field(default_factory=list)
    peak_pss_mb: float = float("nan")


# -- /proc -------------------------------------------------------------------------------------


def children_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) * CLOCK_TICK_S  # cutime, cstime


def tree(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def pss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


async def sample_pss(pid: int, level: Level, task_status: trio.TaskStatus[None]) -> None:
    peak = 0
    task_status.started()
    try:
        while True:
            peak = max(peak, sum(pss_kb(p) for p in tree(pid)))
            await trio.sleep(0.1)
    finally:
        level.peak_pss_mb = peak / 1024


# -- the mock floor ----------------------------------------------------------------------------


async def mock_ttfb(client: httpx.AsyncClient, url: str) -> float:
    body = {"model": MODEL, "stream": True, "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}
    started = time.monotonic()
    first = None
    async with client.stream("POST", f"{url}/responses", json=body) as response:
        async for line in response.aiter_lines():
            if first is None and '"response.output_text.delta"' in line:
                first = time.monotonic()
    if first is None:
        raise RuntimeError("the mock sent no delta")
    return (first - started) * 1000


# -- the warm app-server floor -----------------------------------------------------------------


class WarmAppServer:
    """A bare app-server, initialized and with a thread started, driven by hand."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.buffer = b""

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self.buffer:
            data = await self.process.stdout.receive_some(65536)
            if not data:
                raise RuntimeError("the app-server exited")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(encode(message))

    async def answer(self, request_id: int) -> dict[str, Any]:
        while True:
            message = await self.line()
            if message.get("id") == request_id and "method" not in message:
                if "error" in message:
                    raise RuntimeError(f"refused: {message['error']}")
                return message["result"]

    async def ready(self, cwd: str) -> str:
        await self.send(initialize_request())
        await self.answer(1)
        await self.send(INITIALIZED)
        await self.send({"id": 2, "method": "thread/start", "params": {
            "cwd": cwd, "sandbox": "read-only", "approvalPolicy": "never", "ephemeral": True,
            "model": MODEL, "baseInstructions": ""}})
        return str((await self.answer(2))["thread"]["id"])

    async def turn_ttfb(self, thread_id: str) -> float:
        started = time.monotonic()
        await self.send({"id": 3, "method": "turn/start", "params": {
            "threadId": thread_id, "input": [{"type": "text", "text": "hi",
                                              "text_elements": []}]}})
        while True:
            message = await self.line()
            if message.get("method") == "item/agentMessage/delta":
                return (time.monotonic() - started) * 1000


@asynccontextmanager
async def warm_app_servers(launches: list[ChildLaunch]) -> AsyncIterator[list[WarmAppServer]]:
    servers = []
    try:
        for launch in launches:
            process = await trio.lowlevel.open_process(
                list(launch.argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, cwd=str(launch.cwd), env=dict(launch.env),
                start_new_session=True)
            servers.append(WarmAppServer(process))
        yield servers
    finally:
        with trio.CancelScope(shield=True):
            for server in servers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.process.pid, 9)
                await server.process.wait()


# -- the proxy ---------------------------------------------------------------------------------


@asynccontextmanager
async def proxy_process(env: dict[str, str], src: Path) -> AsyncIterator[tuple[str, int]]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
         "from codex_openai_proxy.cli import main; sys.exit(main([]))", str(src)],
        env=env, stderr=subprocess.PIPE, start_new_session=True)
    try:
        url = await listening_url(process, timeout_s=60)

        async def drain() -> None:
            while await process.stderr.receive_some():  # type: ignore[union-attr]
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            yield url, process.pid
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            process.terminate()
            with trio.move_on_after(10):
                await process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            await process.wait()


async def proxy_ttfb(client: httpx.AsyncClient) -> float:
    body = {"model": MODEL, "stream": True,
            "messages": [{"role": "user", "content": f"hi {time.monotonic_ns()}"}]}
    started = time.monotonic()
    first = None
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"status {response.status_code}: {response.text[:300]}")
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                if "error" in event:
                    raise RuntimeError(f"error event: {line[:300]}")
                choices = event.get("choices") or [{}]
                if first is None and choices[0].get("delta", {}).get("content"):
                    first = time.monotonic()
    if first is None:
        raise RuntimeError("no content arrived")
    return (first - started) * 1000


async def settled(client: httpx.AsyncClient, spares: int) -> None:
    """Until the proxy runs nothing and has its spares back (as between a user's requests)."""
    with trio.fail_after(60):
        while True:
            health = (await client.get("/healthz")).json()
            ready = health.get("spares", {}).get("ready", 0)
            if not health["runs"]["active"] and ready >= spares:
                return
            await trio.sleep(0.02)


# -- the levels --------------------------------------------------------------------------------


async def gather(count: int, one: Callable[[], Any], level: Level) -> None:
    async def run() -> None:
        try:
            level.ttfb_ms.append(await one())
        except Exception as error:
            level.errors.append(str(error))

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(run)


async def measure(args: argparse.Namespace) -> dict[str, dict[str, Level]]:
    results: dict[str, dict[str, Level]] = {}
    root = Path(tempfile.mkdtemp(prefix="bench-codex-", dir="/var/tmp"))
    try:
        async with trio.open_nursery() as nursery:
            mock = MockResponses(answer=ANSWER, first_output_delay_s=FIRST_DELTA_MS / 1000,
                                 delta_delay_s=0.01)
            await nursery.start(serve_mock, mock)
            home = codex_home(root / "codex-home", mock.url)
            env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(root),
                   "CODEX_HOME": str(home), "LANG": "C.UTF-8"}
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)

            results["mock floor"] = levels = {}
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                for name, streams in LOADS.items():
                    level = levels[name] = Level(name)
                    for _ in range(args.rounds if streams > 1 else args.sequential):
                        await gather(streams, lambda c=client: mock_ttfb(c, mock.url), level)
            print("  mock floor done", flush=True)

            results["warm app-server floor"] = levels = {}
            settings = Settings(codex_bin=args.codex, codex_model=MODEL)
            locator = CodexLocator(settings, env, root)
            await locator.refresh(ModelCatalog(MODEL))
            setup = await locator.get()
            numbers = iter(range(10**6))
            for name, streams in LOADS.items():
                level = levels[name] = Level(name)
                for _ in range(args.rounds if streams > 1 else args.sequential):
                    launches = [child_launch(setup, settings, root / f"warm-{next(numbers)}")
                                for _ in range(streams)]
                    async with warm_app_servers(launches) as servers:
                        threads = []
                        for server, launch in zip(servers, launches, strict=True):
                            threads.append(await server.ready(str(launch.cwd)))
                        await gather_pairs(servers, threads, level)
            print("  warm app-server floor done", flush=True)

            for label, src, warm in [("proxy", REPO / "src", args.warm),
                                     ("proxy, no spares", REPO / "src", 0),
                                     *([("before", args.before, 0)] if args.before else [])]:
                results[label] = await measure_proxy(label, src, warm, env, args, limits)
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


async def gather_pairs(servers: list[WarmAppServer], threads: list[str], level: Level) -> None:
    async def run(server: WarmAppServer, thread_id: str) -> None:
        try:
            level.ttfb_ms.append(await server.turn_ttfb(thread_id))
        except Exception as error:
            level.errors.append(str(error))

    async with trio.open_nursery() as nursery:
        for server, thread_id in zip(servers, threads, strict=True):
            nursery.start_soon(run, server, thread_id)


async def measure_proxy(label: str, src: Path, warm: int, env: dict[str, str],
                        args: argparse.Namespace, limits: httpx.Limits) -> dict[str, Level]:
    levels: dict[str, Level] = {}
    proxy_env = {**env, "CODEX_BIN": args.codex, "PORT": "0", "PROXY_API_KEY": API_KEY,
                 "PROXY_MAX_CONCURRENT": "64", "PROXY_QUEUE_TIMEOUT_S": "120",
                 "PROXY_WARM_CHILDREN": str(warm), "CODEX_LOGIN_METHOD": "",
                 "PROXY_LOG_LEVEL": "info"}
    async with proxy_process(proxy_env, src) as (url, pid), httpx.AsyncClient(
            base_url=url, timeout=120, limits=limits,
            headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        await settled(client, warm)
        await proxy_ttfb(client)  # the page cache, both ways
        for name, streams in LOADS.items():
            level = levels[name] = Level(name)
            await settled(client, warm)
            cpu_before, requests = children_cpu_s(pid), 0
            async with trio.open_nursery() as sampler:
                if streams == 64:
                    await sampler.start(sample_pss, pid, level)
                for _ in range(args.rounds if streams > 1 else args.sequential):
                    if streams == 1:
                        await settled(client, warm)
                    await gather(streams, lambda: proxy_ttfb(client), level)
                    requests += streams
                sampler.cancel_scope.cancel()
            await settled(client, warm)
            level.cpu_ms_per_request = (children_cpu_s(pid) - cpu_before) / requests * 1000
    print(f"  {label} done", flush=True)
    return levels


# -- the report --------------------------------------------------------------------------------


def report(results: dict[str, dict[str, Level]]) -> list[tuple[str, float, float]]:
    print("\n| load | way | TTFB p50 | TTFB p90 | / mock floor (p50) | Codex CPU per request "
          "| requests / errors |")
    print("|---|---|---:|---:|---:|---:|---:|")
    targets = []
    for name in LOADS:
        floor = percentile(results["mock floor"][name].ttfb_ms, 50)
        for way, levels in results.items():
            level = levels[name]
            p50 = percentile(level.ttfb_ms, 50)
            cpu = "" if level.cpu_ms_per_request != level.cpu_ms_per_request else (
                f"{level.cpu_ms_per_request:.0f} ms")
            print(f"| {name} | {way} | {p50:.0f} ms | {percentile(level.ttfb_ms, 90):.0f} ms | "
                  f"{p50 / floor:.2f}x | {cpu} | {len(level.ttfb_ms)} / {len(level.errors)} |")
        proxy = percentile(results["proxy"][name].ttfb_ms, 50) / floor
        limit = {"sequential": 1.15, "16 streams": 3.0, "64 streams": 8.0}[name]
        targets.append((f"{name}: proxy TTFB p50 <= {limit}x the mock floor", proxy, limit))
    pss = results["proxy"]["64 streams"].peak_pss_mb
    print(f"\nPeak PSS of the proxy's process tree at 64 streams: {pss:.0f} MB "
          f"(no spares: {results['proxy, no spares']['64 streams'].peak_pss_mb:.0f} MB"
          + (f"; before: {results['before']['64 streams'].peak_pss_mb:.0f} MB"
             if "before" in results else "") + ")")
    if "before" in results:
        now = results["proxy"]["sequential"].cpu_ms_per_request
        then = results["before"]["sequential"].cpu_ms_per_request
        targets.append(("Codex CPU per request <= 25% of before's", now / then, 0.25))
    print("\n| target | measured | |\n|---|---:|---|")
    for what, measured, limit in targets:
        print(f"| {what} | {measured:.2f} | {'MET' if measured <= limit else 'MISSED'} |")
    return targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codex", default=os.environ.get("CODEX_OPENAI_PROXY_TEST_CODEX") or str(
        REPO / ".tools" / "codex" / "node_modules" / ".bin" / "codex"))
    parser.add_argument("--before", type=Path, metavar="SRC",
                        help="also measure the proxy package in SRC (e.g. a worktree's src)")
    parser.add_argument("--warm", type=int, default=2, help="PROXY_WARM_CHILDREN (2)")
    parser.add_argument("--sequential", type=int, default=15,
                        help="requests one at a time (15)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of 16 and of 64 requests at once (2)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, Linux {platform.release()}, "
          f"Python {platform.python_version()}; mock first delta {FIRST_DELTA_MS} ms",
          flush=True)
    results = trio.run(measure, args)
    report(results)
    errors = [e for levels in results.values() for level in levels.values() for e in level.errors]
    for error in errors[:10]:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
