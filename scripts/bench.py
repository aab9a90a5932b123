#!/usr/bin/env python3
"""What the proxy adds, measured against the physical limit of reading the same Codex directly.

    .venv/bin/python scripts/bench.py                    # full: 1, 16, 64, 256 streams (~3 min)
    .venv/bin/python scripts/bench.py --quick            # 1, 16, 64 streams (~45 s)
    .venv/bin/python scripts/bench.py --skip-real-codex  # without the pinned Codex CLI

Every figure is taken twice in the same run, under the same load: once through the proxy
(`python -m codex_openai_proxy` as its own process, `CODEX_ENGINE=exec`, over HTTP), and once
by spawning the same fake Codex (`tests/fake_codex.py`, scenario `drip`, same argv, same prompt)
from this process and reading its stdout pipe. The second is the floor: what any program must
spend to start a child and read its output. The table gives both, their difference and ratio.

- TTFB: request sent (or child spawned) until the first content chunk arrives. "Added" TTFB
  subtracts, per request, the child's own time to first output: from its first instruction
  (a bash wrapper notes `$EPOCHREALTIME` before it execs Python) to the moment it stamped its
  first message. What is left is the proxy's work before the spawn, the spawn itself, and the
  relay of that first message.
- Relay: each message the fake Codex writes carries `time.monotonic_ns()` taken as it was
  written (the clock is system-wide on Linux); relay latency is receive time minus that stamp,
  for every message after the first (the first is part of TTFB).
- CPU per 1,000 chunks: the proxy's utime+stime (/proc/PID/stat) over the measuring window,
  per content chunk relayed in it, the cost of each request (spawn, HTTP) included. The floor
  is this process's own CPU while it reads the pipes itself.
- RSS per open stream: the proxy's peak VmRSS during the window minus its VmRSS once warmed
  up (each level has a proxy of its own), divided by the number of streams.
- Real Codex (the pinned CLI against tests/mock_responses.py): time to first content byte per
  engine, through the proxy and running Codex directly (`codex exec --json`, first agent
  message; `codex app-server` driven with the proxy's own sans-I/O `AppServerSession`, first
  agent message delta), one run at a time.

Load is closed-loop: N workers each run one stream after another, their first starts spread
over one stream's length so that spawns are steady; only streams started inside the measuring
window count. This process is also the HTTP client, on the same 2 cores: its CPU is printed,
and its garbage collector is paused during each window. `--profile DIR` samples the proxy with
py-spy; `--raw FILE` keeps every sample. docs/benchmarks.md has the latest table and what it
shows. Exit status 0 unless a stream failed or was malformed (then 1); targets print MET or
MISSED.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
sys.path.insert(0, str(TESTS))

from codex_openai_proxy.app_server_protocol import (  # noqa: E402
    AppServerSession,
    TurnPlan,
    encode,
)
from codex_openai_proxy.chat_request import parse_chat_request  # noqa: E402
from codex_openai_proxy.codex_events import MessageDelta, TurnCompleted, TurnFailed  # noqa: E402
from codex_openai_proxy.codex_probe import probe_codex  # noqa: E402
from codex_openai_proxy.engines.app_server import app_server_argv  # noqa: E402
from codex_openai_proxy.engines.exec import exec_argv  # noqa: E402
from codex_openai_proxy.prompt import render_prompt  # noqa: E402

from mock_responses import MockResponses, codex_home, serve_mock  # noqa: E402

API_KEY = "bench-key"
MODEL = "gpt-5"
STAMP = re.compile(r"\[(\d+)@(\d+)\]")
STAMP_BYTES = re.compile(rb"\[(\d+)@(\d+)\]")
CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
STREAM_TIMEOUT_S = 120


@dataclass(frozen=True)
class Level:
    streams: int
    drip_count: int  # messages per stream
    gap_ms: int  # between messages
    measure_s: float  # the measuring window
    ramp_share: float = 1.0  # first starts spread over this share of one stream's length

    @property
    def stream_s(self) -> float:
        return (self.drip_count - 1) * self.gap_ms / 1000


# Each fake Codex is a Python start (~25 ms of CPU): longer streams at higher concurrency keep
# the spawn rate (streams / stream length) where 2 cores can take it, so that start-ups do not
# drown what is measured. 256 streams write 5 messages a second each instead of 20, the same
# 1,280 chunks a second as 64 streams: that level is about many open streams, not about 4x the
# throughput, which 2 cores shared with 256 children and the client cannot give.
FULL_LEVELS = (Level(1, 5, 50, 10), Level(16, 20, 50, 8), Level(64, 80, 50, 12),
               Level(256, 40, 200, 8))
QUICK_LEVELS = (Level(1, 5, 50, 2), Level(16, 20, 50, 2), Level(64, 80, 50, 3, ramp_share=0.5))


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class StreamResult:
    number: int
    sent_ns: int  # time.monotonic_ns() when the request was sent (or the child spawned)
    clock_offset_ns: int  # time.time_ns() - time.monotonic_ns() at that moment
    chunks: list[tuple[int, int, int]] = field(default_factory=list)  # (index, stamp, received)
    child_start_ns: int | None = None  # monotonic, from the wrapper's $EPOCHREALTIME
    error: str | None = None
    measured: bool = False


@dataclass
class PhaseResult:
    path: str  # "proxy" or "pipe"
    level: Level
    streams: list[StreamResult]
    window_ns: tuple[int, int]
    cpu_s: float  # the proxy's (path proxy) or this process's (path pipe) CPU in the window
    client_cpu_s: float  # this process's CPU in the window
    machine_busy: float  # the share of all CPUs' time spent busy in the window (0..1)
    peak_rss_kb: int | None = None  # the proxy's, while the streams were open
    peak_fds: int | None = None  # the proxy's open file descriptors, likewise
    idle_rss_kb: int | None = None  # the proxy's, warmed up, before the streams began

    @property
    def measured(self) -> list[StreamResult]:
        return [s for s in self.streams if s.measured and s.error is None]

    @property
    def errors(self) -> list[str]:
        return [f"{self.path} stream {s.number}: {s.error}" for s in self.streams if s.error]

    def ttfb_ms(self) -> list[float]:
        return [(s.chunks[0][2] - s.sent_ns) / 1e6 for s in self.measured]

    def added_ttfb_ms(self) -> list[float]:
        """TTFB minus the child's own time from its start to its first stamp."""
        return [((s.chunks[0][2] - s.sent_ns) - (s.chunks[0][1] - s.child_start_ns)) / 1e6
                for s in self.measured if s.child_start_ns is not None]

    def to_child_start_ms(self) -> list[float]:
        """Request sent (or spawn called) until the child's first instruction."""
        return [(s.child_start_ns - s.sent_ns) / 1e6 for s in self.measured
                if s.child_start_ns is not None]

    def first_relay_ms(self) -> list[float]:
        return [(s.chunks[0][2] - s.chunks[0][1]) / 1e6 for s in self.measured]

    def relay_ms(self, *, last: bool = True) -> list[float]:
        """Every message after the first (that one belongs to TTFB).

        The last can wait on the child itself: it writes `turn.completed` and exits at once,
        and a reader woken on the same core waits for it (the pipe shows this as well).
        """
        final = self.level.drip_count - 1
        return [(received - stamp) / 1e6 for s in self.measured
                for index, stamp, received in s.chunks if index > 0 and (last or index < final)]

    def chunks_in_window(self) -> int:
        start, end = self.window_ns
        return sum(start <= received < end for s in self.streams for _, _, received in s.chunks)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: a value that was actually observed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime only: cutime/cstime would add the Codex children the proxy reaped.
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all CPUs together."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) * CLOCK_TICK_S, sum(ticks[:8]) * CLOCK_TICK_S


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the fake Codex ----------------------------------------------------------------------------


@dataclass
class FakeCodex:
    """tests/fake_codex.py behind a bash wrapper that notes when each child started."""

    root: Path
    wrapper: Path
    record_dir: Path
    scratch_dir: Path

    @classmethod
    def create(cls, root: Path) -> FakeCodex:
        bin_dir, record_dir, scratch_dir = root / "bin", root / "records", root / "scratch"
        for directory in (bin_dir, record_dir, scratch_dir):
            directory.mkdir(parents=True)
        wrapper = bin_dir / "codex"
        # bash, for $EPOCHREALTIME: a clock read without a fork, so the note costs the child
        # microseconds. `exec` keeps the pid, which is how a note finds its run's record.
        wrapper.write_text(
            "#!/bin/bash\n"
            "start=$EPOCHREALTIME\n"
            'printf "%s\\n" "$start" > "$FAKE_CODEX_RECORD_DIR/$$.start"\n'
            f'exec "{sys.executable}" "{TESTS / "fake_codex.py"}" "$@"\n'
        )
        wrapper.chmod(0o755)
        return cls(root, wrapper, record_dir, scratch_dir)

    def env(self, level: Level) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",  # $EPOCHREALTIME's decimal point follows the locale
            "FAKE_CODEX_RECORD_DIR": str(self.record_dir),
            "FAKE_CODEX_DRIP_COUNT": str(level.drip_count),
            "FAKE_CODEX_DRIP_MS": str(level.gap_ms),
        }

    def clear_records(self) -> None:
        for path in self.record_dir.iterdir():
            path.unlink()

    def child_starts(self) -> dict[int, int]:
        """Request number -> when its child started (CLOCK_REALTIME, ns)."""
        starts = {}
        for record in self.record_dir.glob("*.json"):
            pid = record.stem
            match = re.search(r"bench-request-(\d+)", json.loads(record.read_text())["stdin"])
            start_file = self.record_dir / f"{pid}.start"
            if match and start_file.exists():
                seconds, _, micros = start_file.read_text().strip().partition(".")
                nanos = int(seconds) * 10**9 + int(micros.ljust(6, "0")) * 1000
                starts[int(match.group(1))] = nanos
        return starts


def chat_body(number: int) -> dict[str, Any]:
    return {"model": MODEL, "stream": True,
            "messages": [{"role": "user",
                          "content": f"bench-request-{number} fake-scenario:drip"}]}


def prompt_for(body: dict[str, Any], *, system_in_prompt: bool = True) -> str:
    """The exact prompt the proxy would write to Codex's stdin for `body`."""
    request = parse_chat_request(body, default_model=MODEL)
    # app-server takes the system and developer messages as instructions, not in the prompt.
    return render_prompt([m for m in request.messages if system_in_prompt
                          or m.role not in ("system", "developer")])


def run_options(scratch_dir: str) -> dict[str, Any]:
    # What the proxy passes with its default settings (CODEX_MODEL=gpt-5, chatgpt login).
    return {"model": MODEL, "reasoning_effort": None, "login_method": "chatgpt",
            "scratch_dir": scratch_dir}


# -- one stream, either way --------------------------------------------------------------------


def new_stream(number: int) -> StreamResult:
    offset = time.time_ns() - time.monotonic_ns()
    return StreamResult(number, time.monotonic_ns(), offset)


async def pipe_stream(number: int, argv: list[str], env: dict[str, str], cwd: str,
                      drip_count: int) -> StreamResult:
    """The floor: spawn the fake Codex, write the prompt, read its stdout pipe."""
    prompt = prompt_for(chat_body(number)).encode()
    result = new_stream(number)
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        cwd=cwd, env=env, start_new_session=True)
    assert process.stdin is not None and process.stdout is not None
    completed = False
    try:
        with trio.fail_after(STREAM_TIMEOUT_S):
            await process.stdin.send_all(prompt)
            await process.stdin.aclose()
            buffered = b""
            while data := await process.stdout.receive_some(65536):
                received = time.monotonic_ns()
                buffered += data
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    if b'"item.completed"' in line and (match := STAMP_BYTES.search(line)):
                        result.chunks.append((int(match[1]), int(match[2]), received))
                    elif b'"turn.completed"' in line:
                        completed = True
            status = await process.wait()
        if status != 0 or not completed:
            result.error = f"exit status {status}, turn completed: {completed}"
    except trio.TooSlowError:
        result.error = "timed out"
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
            await process.stdout.aclose()
    check_chunks(result, drip_count)
    return result


async def proxy_stream(client: httpx.AsyncClient, number: int, drip_count: int) -> StreamResult:
    body = json.dumps(chat_body(number)).encode()
    result = new_stream(number)
    role = done = stopped = False
    try:
        with trio.fail_after(STREAM_TIMEOUT_S):
            async with client.stream("POST", "/v1/chat/completions", content=body,
                                     headers={"Content-Type": "application/json"}) as response:
                if response.status_code != 200:
                    await response.aread()
                    result.error = f"status {response.status_code}: {response.text[:200]}"
                    return result
                async for line in response.aiter_lines():
                    received = time.monotonic_ns()
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        done = True
                    elif match := STAMP.search(line):
                        result.chunks.append((int(match[1]), int(match[2]), received))
                    elif '"role":"assistant"' in line:
                        role = not result.chunks
                    elif '"finish_reason":"stop"' in line:
                        stopped = True
                    elif '"error"' in line:
                        result.error = line[:300]
        if result.error is None and not (role and stopped and done):
            result.error = f"malformed stream: role {role}, stop {stopped}, [DONE] {done}"
    except trio.TooSlowError:
        result.error = "timed out"
    except httpx.HTTPError as error:
        result.error = repr(error)
    check_chunks(result, drip_count)
    return result


def check_chunks(result: StreamResult, drip_count: int) -> None:
    indexes = [index for index, _, _ in result.chunks]
    if result.error is None and indexes != list(range(drip_count)):
        result.error = f"messages {indexes[:5]}...{indexes[-3:]}, expected 0..{drip_count - 1}"


# -- the proxy as its own process --------------------------------------------------------------


@dataclass
class ProxyProcess:
    process: trio.Process
    url: str
    log_tail: bytearray

    @property
    def pid(self) -> int:
        return self.process.pid


@asynccontextmanager
async def proxy_process(env: dict[str, str]) -> AsyncIterator[ProxyProcess]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "codex_openai_proxy"],
        env={**env, "PORT": "0", "HOST": "127.0.0.1", "PROXY_API_KEY": API_KEY},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    assert process.stderr is not None
    log_tail = bytearray()
    try:
        url = await listening_url(process.stderr, log_tail)
        async with trio.open_nursery() as nursery:
            # The proxy logs a line per request: an undrained pipe would stall it.
            nursery.start_soon(drain, process.stderr, log_tail)
            yield ProxyProcess(process, url, log_tail)
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(20):
                await process.wait()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def listening_url(stderr: trio.abc.ReceiveStream, log_tail: bytearray) -> str:
    with trio.fail_after(30):
        while b"listening on " not in log_tail or not log_tail.endswith(b"\n"):
            data = await stderr.receive_some()
            if not data:
                raise RuntimeError(f"the proxy exited early:\n{log_tail.decode()}")
            log_tail += data
    line = next(line for line in log_tail.decode().splitlines() if "listening on " in line)
    return line.split("listening on ", 1)[1].split()[0]


async def drain(stream: trio.abc.ReceiveStream, tail: bytearray) -> None:
    while data := await stream.receive_some():
        tail += data
        del tail[:-16384]


def http_client(url: str, streams: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8)
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"},
                             timeout=STREAM_TIMEOUT_S, limits=limits)


# -- one level, both paths ---------------------------------------------------------------------


class Numbers:
    """Request numbers, unique across the run, so that a record finds its stream."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> int:
        self._next += 1
        return self._next


async def run_phase(path: str, level: Level, one_stream: Callable[[int], Any],
                    numbers: Numbers, proxy_pid: int | None,
                    fake: FakeCodex) -> PhaseResult:
    """`level.streams` workers, closed loop, for one ramp plus the measuring window."""
    fake.clear_records()
    streams: list[StreamResult] = []
    ramp_ns = int(level.stream_s * level.ramp_share * 1e9) if level.streams > 1 else 0
    start = time.monotonic_ns()
    window = (start + ramp_ns, start + ramp_ns + int(level.measure_s * 1e9))
    usage: dict[str, Any] = {"rss": [], "fds": []}

    async def worker(index: int) -> None:
        await sleep_until(start + ramp_ns * index // level.streams)
        while time.monotonic_ns() < window[1]:
            result = await one_stream(numbers())
            result.measured = window[0] <= result.sent_ns < window[1]
            streams.append(result)

    def cpu() -> float:
        return proc_cpu_s(proxy_pid) if proxy_pid is not None else own_cpu_s()

    async def sampler() -> None:
        await sleep_until(window[0])
        usage["cpu"], usage["client"], usage["busy"] = cpu(), own_cpu_s(), machine_busy_s()
        while time.monotonic_ns() < window[1]:
            if proxy_pid is not None:
                usage["rss"].append(proc_rss_kb(proxy_pid))
                usage["fds"].append(len(os.listdir(f"/proc/{proxy_pid}/fd")))
            await trio.sleep(0.1)
        usage["cpu"], usage["client"] = cpu() - usage["cpu"], own_cpu_s() - usage["client"]
        busy, total = machine_busy_s()
        usage["busy"] = (busy - usage["busy"][0]) / max(1e-9, total - usage["busy"][1])

    # This process is the measuring instrument: a collection of its own, with thousands of
    # results and httpx objects alive, stops every stream at once for tens of milliseconds and
    # would be charged to the proxy. The results are kept anyway, and cycles wait until after.
    gc.collect()
    gc.freeze()
    gc.disable()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler)
        for index in range(level.streams):
            nursery.start_soon(worker, index)

    gc.enable()
    gc.unfreeze()
    starts = fake.child_starts()
    for result in streams:
        real = starts.get(result.number)
        if real is not None:
            result.child_start_ns = real - result.clock_offset_ns
    return PhaseResult(path, level, streams, window, usage["cpu"], usage["client"],
                       usage["busy"], max(usage["rss"], default=None),
                       max(usage["fds"], default=None))


async def sleep_until(monotonic_ns: int) -> None:
    await trio.sleep(max(0.0, (monotonic_ns - time.monotonic_ns()) / 1e9))


async def run_level(level: Level, fake: FakeCodex, numbers: Numbers,
                    profile_dir: Path | None) -> tuple[PhaseResult, PhaseResult, list[str]]:
    env = fake.env(level)
    # The same argv the proxy builds for this fake Codex (whose --help is 0.169.0's).
    install = await probe_codex(str(fake.wrapper), env)
    argv = exec_argv(str(fake.wrapper), install.capabilities, **run_options(str(fake.scratch_dir)))
    proxy_env = {**env, "CODEX_BIN": str(fake.wrapper), "CODEX_ENGINE": "exec",
                 "PROXY_MAX_CONCURRENT": "300", "PROXY_QUEUE_TIMEOUT_S": "600"}

    async def through_pipe(number: int) -> StreamResult:
        return await pipe_stream(number, argv, env, str(fake.scratch_dir), level.drip_count)

    async with proxy_process(proxy_env) as proxy, http_client(proxy.url, level.streams) as client:
        async def through_proxy(number: int) -> StreamResult:
            return await proxy_stream(client, number, level.drip_count)

        # Warm both paths (imports, page cache, the proxy's first-request setup), at once:
        # one after another, the longer streams would take most of a quick run.
        warm: list[StreamResult] = []

        async def warm_up(one_stream: Callable[[int], Any]) -> None:
            warm.append(await one_stream(numbers()))

        async with trio.open_nursery() as nursery:
            for one_stream in (through_pipe, through_proxy) * 3:
                nursery.start_soon(warm_up, one_stream)
        errors = [f"warm-up stream {s.number}: {s.error}" for s in warm if s.error]
        idle_rss_kb = proc_rss_kb(proxy.pid)
        pipe = await run_phase("pipe", level, through_pipe, numbers, None, fake)
        async with profiler(proxy.pid, profile_dir, f"proxy-{level.streams}-streams"):
            via_proxy = await run_phase("proxy", level, through_proxy, numbers, proxy.pid, fake)
        via_proxy.idle_rss_kb = idle_rss_kb
        if via_proxy.errors or errors:
            print(f"proxy log tail:\n{proxy.log_tail.decode(errors='replace')[-2000:]}",
                  file=sys.stderr)
    return pipe, via_proxy, errors


@asynccontextmanager
async def profiler(pid: int, profile_dir: Path | None, name: str) -> AsyncIterator[None]:
    """py-spy sampling the proxy while the block runs, as collapsed stacks (--profile)."""
    if profile_dir is None:
        yield
        return
    py_spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if py_spy is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    profile_dir.mkdir(parents=True, exist_ok=True)
    output = profile_dir / f"{name}.txt"
    # --nonblocking: py-spy reads the proxy's memory without pausing it, so the figures
    # measured while profiling are (nearly) those of an unprofiled run.
    process = await trio.lowlevel.open_process(
        [py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
         "--nonblocking", "--gil", "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        with trio.CancelScope(shield=True):
            process.send_signal(signal.SIGINT)
            await process.wait()
    print(f"  profile: {output}", flush=True)


# -- the real Codex ----------------------------------------------------------------------------


@dataclass
class RealRun:
    first_ms: float
    total_ms: float


@dataclass
class RealResult:
    engine: str
    proxy: list[RealRun] = field(default_factory=list)
    direct: list[RealRun] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def real_proxy_run(client: httpx.AsyncClient, body: dict[str, Any]) -> RealRun:
    started = time.monotonic_ns()
    first = None
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"status {response.status_code}: {response.text[:300]}")
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {"):
                event = json.loads(line[6:])
                if "error" in event:
                    raise RuntimeError(f"error event: {line[:300]}")
                choices = event.get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.monotonic_ns()
            if line == "data: [DONE]":
                break
    ended = time.monotonic_ns()
    if first is None:
        raise RuntimeError("no content arrived")
    # The proxy stops its child once the answer is out; the next run, direct or not, must not
    # share the CPU with that child's exit.
    with trio.fail_after(10):
        while (await client.get("/healthz")).json()["runs"]["active"]:
            await trio.sleep(0.01)
    return RealRun((first - started) / 1e6, (ended - started) / 1e6)


@asynccontextmanager
async def codex_child(argv: list[str], env: dict[str, str],
                      cwd: str) -> AsyncIterator[trio.Process]:
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        cwd=cwd, env=env, start_new_session=True)
    try:
        yield process
    finally:
        with trio.CancelScope(shield=True):
            # Codex exits by itself after an exec turn, and when an app-server's stdin closes;
            # the group is swept either way (the npm wrapper runs the native binary as a child).
            assert process.stdin is not None
            await process.stdin.aclose()
            with trio.move_on_after(2):
                await process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def lines_of(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    buffered = b""
    while data := await stream.receive_some(65536):
        buffered += data
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace")


async def real_exec_direct(codex_bin: str, env: dict[str, str], body: dict[str, Any],
                           capabilities: Any) -> RealRun:
    scratch = tempfile.mkdtemp(prefix="bench-codex-")
    try:
        argv = exec_argv(codex_bin, capabilities, **run_options(scratch))
        started = time.monotonic_ns()
        first = ended = None
        async with codex_child(argv, env, scratch) as process:
            assert process.stdin is not None and process.stdout is not None
            await process.stdin.send_all(prompt_for(body).encode())
            await process.stdin.aclose()
            async for line in lines_of(process.stdout):
                event = json.loads(line) if line.startswith("{") else {}
                item = event.get("item") or {}
                if first is None and event.get("type") == "item.completed" \
                        and item.get("type") == "agent_message" and item.get("text"):
                    first = time.monotonic_ns()
                if event.get("type") in ("turn.completed", "turn.failed"):
                    if event["type"] == "turn.failed":
                        raise RuntimeError(f"turn failed: {line[:300]}")
                    ended = time.monotonic_ns()
                    break
        if first is None or ended is None:
            raise RuntimeError("codex exec printed no agent message, or no turn.completed")
        return RealRun((first - started) / 1e6, (ended - started) / 1e6)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def real_app_server_direct(codex_bin: str, env: dict[str, str],
                                 body: dict[str, Any]) -> RealRun:
    scratch = tempfile.mkdtemp(prefix="bench-codex-")
    try:
        # The same turn the proxy holds: its own sans-I/O session, over a pipe of our own.
        session = AppServerSession(TurnPlan(
            prompt=prompt_for(body, system_in_prompt=False), cwd=scratch, model=MODEL))
        argv = app_server_argv(codex_bin, login_method="chatgpt")
        started = time.monotonic_ns()
        first = ended = None
        async with codex_child(argv, env, scratch) as process:
            assert process.stdin is not None and process.stdout is not None
            for message in session.start():
                await process.stdin.send_all(encode(message))
            async for line in lines_of(process.stdout):
                outgoing, events = session.feed(line)
                for message in outgoing:
                    await process.stdin.send_all(encode(message))
                for event in events:
                    if first is None and isinstance(event, MessageDelta) and event.text:
                        first = time.monotonic_ns()
                    if isinstance(event, TurnFailed):
                        raise RuntimeError(f"turn failed: {event.message}")
                if any(isinstance(event, TurnCompleted) for event in events):
                    ended = time.monotonic_ns()
                    break
        if first is None or ended is None:
            raise RuntimeError("codex app-server sent no agent message delta, or no turn end")
        return RealRun((first - started) / 1e6, (ended - started) / 1e6)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def real_codex(codex_bin: str, runs: int, deltas: int, gap_ms: int,
                     root: Path) -> list[RealResult]:
    results = []
    body = {"model": MODEL, "stream": True,
            "messages": [{"role": "user", "content": "Write a paragraph."}]}
    async with trio.open_nursery() as nursery:
        mock = MockResponses(answer=tuple(f"word{i} " for i in range(deltas)),
                             delta_delay_s=gap_ms / 1000)
        await nursery.start(serve_mock, mock)
        home = codex_home(root / "codex-home", mock.url)
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(root),
               "CODEX_HOME": str(home), "LANG": "C.UTF-8"}
        install = await probe_codex(codex_bin, env)
        if not install.found:
            raise RuntimeError(install.problem)
        for engine in ("exec", "app-server"):
            result = RealResult(engine)
            results.append(result)
            if engine == "exec":
                direct = partial(real_exec_direct, codex_bin, env, body, install.capabilities)
            else:
                direct = partial(real_app_server_direct, codex_bin, env, body)
            proxy_env = {**env, "CODEX_BIN": codex_bin, "CODEX_ENGINE": engine}
            async with proxy_process(proxy_env) as proxy, http_client(proxy.url, 2) as client:
                through_proxy = partial(real_proxy_run, client, body)
                await through_proxy()  # warm the page cache, both ways
                await direct()
                # Alternated, so that drift in the machine's load falls on both alike.
                for _ in range(runs):
                    for name, run, into in (("proxy", through_proxy, result.proxy),
                                            ("direct", direct, result.direct)):
                        try:
                            into.append(await run())
                        except Exception as error:
                            result.errors.append(f"real codex {engine} {name}: {error}")
        nursery.cancel_scope.cancel()
    return results


# -- the report --------------------------------------------------------------------------------


def ms(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.1f} ms" if abs(value) < 100 else f"{value:.0f} ms"


def ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b <= 0:
        return "n/a"
    return f"{a / b:.2f}x"


def row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


@dataclass
class Target:
    what: str
    measured: float
    limit: float
    unit: str = "ms"

    @property
    def met(self) -> bool:
        return not math.isnan(self.measured) and self.measured <= self.limit


def report(levels: list[tuple[PhaseResult, PhaseResult]], real: list[RealResult],
           real_args: tuple[int, int, int] | None) -> list[Target]:
    targets: list[Target] = []
    if levels:
        print("\n| streams | figure | proxy | pipe (floor) | proxy - pipe | proxy / pipe |")
        print("|---:|---|---:|---:|---:|---:|")
    for pipe, proxy in levels:
        n = proxy.level.streams

        def line(figure: str, a: float, b: float | None = None,
                 fmt: Callable[[float], str] = ms) -> None:
            if b is None:
                print(row(str(n), figure, fmt(a), "", "", ""))  # noqa: B023
            else:
                print(row(str(n), figure, fmt(a), fmt(b), fmt(a - b), ratio(a, b)))  # noqa: B023

        def both(values: Callable[[PhaseResult], list[float]], p: float) -> tuple[float, float]:
            return percentile(values(proxy), p), percentile(values(pipe), p)  # noqa: B023

        for p in (50, 99):
            line(f"TTFB p{p}", *both(PhaseResult.ttfb_ms, p))
        for p in (50, 99):
            line(f"added TTFB p{p} (TTFB - child's own)", *both(PhaseResult.added_ttfb_ms, p))
        line("- of which sent -> child's first instruction, p50",
             *both(PhaseResult.to_child_start_ms, 50))
        line("- of which first message's relay, p50", *both(PhaseResult.first_relay_ms, 50))
        for p in (50, 99):
            line(f"relay p{p}", *both(PhaseResult.relay_ms, p))
        line("relay p99, each stream's last message left out",
             *both(lambda phase: phase.relay_ms(last=False), 99))
        chunks = max(1, proxy.chunks_in_window())
        line("CPU s per 1,000 chunks (proxy / this process)", proxy.cpu_s / chunks * 1000,
             pipe.cpu_s / max(1, pipe.chunks_in_window()) * 1000, lambda v: f"{v:.3f} s")
        idle, peak = proxy.idle_rss_kb or 0, proxy.peak_rss_kb or 0
        print(row(str(n), "RSS per open stream (proxy idle -> peak; open fds at peak)",
                  f"{(peak - idle) / n:.0f} KB ({idle / 1024:.0f} -> {peak / 1024:.0f} MB; "
                  f"{proxy.peak_fds} fds)", "", "", ""))
        line("client CPU s per 1,000 chunks (this process, HTTP)",
             proxy.client_cpu_s / chunks * 1000, fmt=lambda v: f"{v:.3f} s")
        print(row(str(n), "machine CPU busy, both cores", f"{proxy.machine_busy:.0%}",
                  f"{pipe.machine_busy:.0%}", "", ""))
        print(row(str(n), "streams measured / failed",
                  f"{len(proxy.measured)} / {len(proxy.errors)}",
                  f"{len(pipe.measured)} / {len(pipe.errors)}", "", ""))
        if n == 64:
            targets += [
                Target("added TTFB p50 <= 5 ms at 64 streams",
                       percentile(proxy.added_ttfb_ms(), 50), 5),
                Target("added TTFB p99 <= 20 ms at 64 streams",
                       percentile(proxy.added_ttfb_ms(), 99), 20),
                Target("relay p99 <= 5 ms at 64 streams", percentile(proxy.relay_ms(), 99), 5),
            ]
        if n == 256:
            targets.append(Target("256 streams on 2 cores, no error",
                                  len(proxy.errors) + len(pipe.errors), 0, "errors"))

    if real and real_args:
        runs, deltas, gap = real_args
        print(f"\nReal Codex against the mock model ({deltas} deltas {gap} ms apart), "
              f"{runs} runs per engine and path, one at a time:")
        print("\n| engine | figure | proxy | Codex direct | proxy - direct | proxy / direct |")
        print("|---|---|---:|---:|---:|---:|")
        for result in real:
            how = "exec --json" if result.engine == "exec" else "app-server, AppServerSession"
            firsts = ([r.first_ms for r in result.proxy], [r.first_ms for r in result.direct])
            a, b = percentile(firsts[0], 50), percentile(firsts[1], 50)
            print(row(result.engine, f"first content p50 (direct: {how})", ms(a), ms(b),
                      ms(a - b), ratio(a, b)))
            print(row(result.engine, "first content min - max",
                      *(f"{ms(min(v, default=math.nan))} - {ms(max(v, default=math.nan))}"
                        for v in firsts), "", ""))
            a = percentile([r.total_ms for r in result.proxy], 50)
            b = percentile([r.total_ms for r in result.direct], 50)
            print(row(result.engine, "whole answer p50", ms(a), ms(b), ms(a - b), ratio(a, b)))

    if targets:
        print("\n| target | measured | |\n|---|---:|---|")
    for target in targets:
        value = (f"{target.measured:.0f} {target.unit}" if target.unit == "errors"
                 else ms(target.measured))
        print(row(target.what, value, "MET" if target.met else "MISSED"))
    return targets


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return (f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")


# -- main --------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    levels = QUICK_LEVELS if args.quick else FULL_LEVELS
    if args.levels:
        wanted = {int(n) for n in args.levels.split(",")}
        levels = tuple(level for level in FULL_LEVELS if level.streams in wanted)
        if len(levels) != len(wanted):
            raise SystemExit(f"--levels: choose among {[level.streams for level in FULL_LEVELS]}")
    print(f"machine: {machine()}")
    print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
    print("levels: " + "; ".join(
        f"{level.streams} streams x {level.drip_count} messages {level.gap_ms} ms apart, "
        f"{level.measure_s:g} s window" for level in levels), flush=True)
    root = Path(tempfile.mkdtemp(prefix="codex-proxy-bench-"))
    errors: list[str] = []
    try:
        fake = FakeCodex.create(root / "fake")
        numbers = Numbers()
        results = []
        for level in levels:
            began = time.monotonic()
            pipe, proxy, warm_errors = await run_level(level, fake, numbers, args.profile)
            results.append((pipe, proxy))
            errors += warm_errors + pipe.errors + proxy.errors
            print(f"  {level.streams} streams: {len(proxy.streams)} through the proxy, "
                  f"{len(pipe.streams)} through the pipe, {time.monotonic() - began:.0f} s",
                  flush=True)
        real: list[RealResult] = []
        real_args = None
        if not args.skip_real_codex:
            runs = args.real_runs or (3 if args.quick else 10)
            real_args = (runs, args.deltas, args.gap_ms)
            began = time.monotonic()
            real = await real_codex(args.codex, runs, args.deltas, args.gap_ms, root / "real")
            for result in real:
                errors += result.errors
            print(f"  real Codex: {time.monotonic() - began:.0f} s", flush=True)
        report(results, real, real_args)
        if args.raw:
            args.raw.write_text(json.dumps({
                "machine": machine(),
                "levels": [{"path": phase.path, "level": asdict(phase.level),
                            "window_ns": phase.window_ns, "cpu_s": phase.cpu_s,
                            "client_cpu_s": phase.client_cpu_s,
                            "machine_busy": phase.machine_busy,
                            "peak_rss_kb": phase.peak_rss_kb,
                            "idle_rss_kb": phase.idle_rss_kb, "peak_fds": phase.peak_fds,
                            "streams": [asdict(s) for s in phase.streams]}
                           for pair in results for phase in pair],
                "real_codex": [asdict(result) for result in real],
            }))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if errors:
        print(f"\n{len(errors)} failed or malformed streams:", file=sys.stderr)
        for error in errors[:20]:
            print(f"  {error}", file=sys.stderr)
        return 1
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1, 16 and 64 streams, short windows, 3 real Codex runs")
    parser.add_argument("--levels", help="only these stream counts, e.g. 64,256 (full sizes)")
    parser.add_argument("--skip-real-codex", action="store_true",
                        help="leave out the real Codex section")
    parser.add_argument("--codex", default=os.environ.get("CODEX_OPENAI_PROXY_TEST_CODEX") or str(
        REPO / ".tools" / "codex" / "node_modules" / ".bin" / "codex"),
        help="the real Codex CLI (default: $CODEX_OPENAI_PROXY_TEST_CODEX or .tools/codex)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="sample the proxy with py-spy during each level, into DIR")
    parser.add_argument("--raw", type=Path, metavar="FILE",
                        help="also write every measurement to FILE (JSON)")
    parser.add_argument("--real-runs", type=int, help="runs per engine and path (10; quick 3)")
    parser.add_argument("--deltas", type=int, default=10, help="mock model: pieces of text")
    parser.add_argument("--gap-ms", type=int, default=50, help="mock model: time between them")
    args = parser.parse_args()
    if not args.skip_real_codex and not os.access(args.codex, os.X_OK):
        parser.error(f"no Codex CLI at {args.codex}: install it with `bash scripts/test.sh`, "
                     "point CODEX_OPENAI_PROXY_TEST_CODEX at it, or pass --skip-real-codex")
    return args


if __name__ == "__main__":
    sys.exit(trio.run(main, parse_args()))
