"""Fixtures shared by the end-to-end tests: the fake Codex, a real proxy, and process checks.

Every end-to-end test runs a real hypercorn server on an ephemeral loopback port, inside the
test's own trio run, and talks to it over TCP. The proxy's Codex children are therefore this
process's children, which lets the tests check after every test that none is left (running or
zombie), and lets a test wait for a pid to die through a pidfd instead of polling.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import sys
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from codex_openai_proxy.server import RunningServer, serve_proxy
from codex_openai_proxy.settings import Settings

TESTS = Path(__file__).parent
FAKE_CODEX = TESTS / "fake_codex.py"
API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


# -- processes ---------------------------------------------------------------------------------


def process_state(pid: int) -> str | None:
    """The /proc state letter of `pid` (R, S, Z, ...), or None if it no longer exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def children_of(parent: int) -> list[int]:
    """The pids whose parent is `parent` (running or zombie), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry))
    return found


def is_sentinel(pid: int) -> bool:
    """Whether `pid` is a proxy's sentinel process (see `codex_openai_proxy/sentinel.py`)."""
    try:
        return b"sentinel.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


async def wait_dead(pid: int, timeout: float = 10.0) -> None:
    """Until `pid` has exited (a zombie counts: it runs nothing). Fails after `timeout`."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with trio.fail_after(timeout):
            await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)


@pytest.fixture(autouse=True)
def no_leftover_children() -> Any:
    """After every test: no process started by the proxy (or the test) is left, not even a
    zombie. This is the product's central promise, so every test checks it."""
    before = set(children_of(os.getpid()))
    yield
    left = [pid for pid in children_of(os.getpid()) if pid not in before]
    assert not left, f"processes left behind: {[(p, process_state(p)) for p in left]}"


# -- the fake Codex ----------------------------------------------------------------------------


@dataclass
class FakeCodex:
    """`tests/fake_codex.py` installed as an executable named `codex`, and what its runs left."""

    bin: Path
    record_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def runs(self, *, idle: bool = False) -> list[dict[str, Any]]:
        """What each run recorded (argv, stdin, cwd, ...), oldest first. App-servers that were
        only initialized (the seed of the children's Codex homes, warm spares not taken) are
        left out unless `idle`."""
        records = [json.loads(path.read_text()) | {"pid": int(path.stem)}
                   for path in self.record_dir.glob("*.json")]
        if not idle:
            records = [record for record in records if "requests" not in record or any(
                request.get("method") not in ("initialize", "initialized")
                for request in record["requests"])]
        return sorted(records, key=lambda record: os.stat(
            self.record_dir / f"{record['pid']}.json").st_mtime_ns)

    def pids(self, run_pid: int) -> list[int]:
        """The run's own pid and those of the processes it started."""
        return [int(line) for line in (self.record_dir / f"{run_pid}.pids").read_text().split()]

    async def wait_for_runs(self, count: int, timeout: float = 60) -> list[int]:
        """Until `count` runs have started (in another process: polled); their pids."""
        with trio.fail_after(timeout):
            while len(started := list(self.record_dir.glob("*.pids"))) < count:
                await trio.sleep(0.02)
        return [int(path.stem) for path in started]


@pytest.fixture
def fake_codex(tmp_path: Path) -> FakeCodex:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    wrapper = bin_dir / "codex"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_CODEX}" "$@"\n')
    wrapper.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "HOME": str(tmp_path),
        "FAKE_CODEX_RECORD_DIR": str(record_dir),
        "PROXY_API_KEY": API_KEY,  # must never reach the child
    }
    return FakeCodex(wrapper, record_dir, env)


# -- the proxy ---------------------------------------------------------------------------------

#: Warm spares are off unless a test asks for them (tests/test_spares.py): the other tests
#: count the fake Codex's runs, and test the path of a child of the request's own.
TEST_SETTINGS = Settings(
    host="127.0.0.1", port=0, api_key=API_KEY, kill_grace_s=0.5, queue_timeout_s=5,
    request_timeout_s=30, engine="exec", warm_children=0,
)


@pytest.fixture
def engine() -> str:
    """The engine `start_proxy` runs; suites that must hold on both parametrize this."""
    return "exec"


@dataclass
class Proxy:
    server: RunningServer
    client: httpx.AsyncClient

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def manager(self) -> Any:
        return self.server.manager


class ProxyStarter:
    def __init__(self, nursery: trio.Nursery, fake_codex: FakeCodex, engine: str) -> None:
        self._nursery = nursery
        self._fake_codex = fake_codex
        self._engine = engine

    async def __call__(self, scenario: str = "normal", *, env: dict[str, str] | None = None,
                       **settings: Any) -> Proxy:
        """Start a proxy whose Codex runs `scenario`; `settings` override TEST_SETTINGS."""
        full_env = {**self._fake_codex.env, "FAKE_CODEX_SCENARIO": scenario, **(env or {})}
        settings.setdefault("codex_bin", "codex")
        settings.setdefault("engine", self._engine)
        server = await self._nursery.start(partial(
            serve_proxy, replace(TEST_SETTINGS, **settings), env=full_env, handle_signals=False,
        ))
        client = httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=30)
        return Proxy(server, client)


@pytest.fixture
async def start_proxy(nursery: trio.Nursery, fake_codex: FakeCodex,
                      engine: str) -> AsyncIterator[ProxyStarter]:
    yield ProxyStarter(nursery, fake_codex, engine)
    # pytest-trio cancels the nursery (and with it every server) when the test ends.


@pytest.fixture
async def proxy(start_proxy: ProxyStarter) -> Proxy:
    return await start_proxy()


# -- reading answers ---------------------------------------------------------------------------


def chat_body(content: str = "Say hello.", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-5", "messages": [{"role": "user", "content": content}], **extra}


@dataclass
class Stream:
    """One SSE response, read as it arrives."""

    response: httpx.Response
    events: list[Any] = field(default_factory=list)  # decoded `data:` payloads; "[DONE]" kept
    raw_lines: list[str] = field(default_factory=list)

    async def next_line(self) -> str:
        """The next non-empty SSE line, comments included."""
        async for line in self._lines:
            self.raw_lines.append(line)
            if line:
                return line
        raise EOFError("the stream ended")

    async def next_event(self) -> Any:
        async for line in self._lines:
            self.raw_lines.append(line)
            if line.startswith("data: "):
                payload = line[len("data: "):]
                event = payload if payload == "[DONE]" else json.loads(payload)
                self.events.append(event)
                return event
        raise EOFError("the stream ended")

    async def read_to_end(self) -> list[Any]:
        while True:
            try:
                await self.next_event()
            except EOFError:
                return self.events

    async def wait_for(self, predicate: Any) -> Any:
        while True:
            event = await self.next_event()
            if predicate(event):
                return event

    def __post_init__(self) -> None:
        self._lines = self.response.aiter_lines()

    @property
    def content(self) -> str:
        return "".join(delta(e).get("content") or "" for e in self.events if choices(e))

    @property
    def reasoning(self) -> str:
        return "".join(delta(e).get("reasoning_content") or "" for e in self.events
                       if choices(e))


def choices(event: Any) -> list[Any]:
    return event.get("choices") or [] if isinstance(event, dict) else []


def delta(event: Any) -> dict[str, Any]:
    return choices(event)[0]["delta"]


def is_ready(event: Any) -> bool:
    """The fake Codex's sign (a reasoning item) that a hanging scenario is fully set up."""
    return bool(choices(event)) and delta(event).get("reasoning_content") == "ready"


class open_stream:
    """POST a streaming chat request and read its SSE events as they come."""

    def __init__(self, client: httpx.AsyncClient, body: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        self._request = client.build_request(
            "POST", "/v1/chat/completions", json={**(body or chat_body()), "stream": True},
            **kwargs,
        )
        self._client = client

    async def __aenter__(self) -> Stream:
        self._response = await self._client.send(self._request, stream=True)
        return Stream(self._response)

    async def __aexit__(self, *exc: Any) -> None:
        await self._response.aclose()


# -- the proxy's log -------------------------------------------------------------------------


class LogWatcher(logging.Handler):
    """Collects the proxy's request lines; lets a test await one instead of sleeping."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()
        self._changed = trio.Event()

    def text(self) -> str:
        return "\n".join(record.getMessage() for record in self.records)

    async def wait_for_line(self, pattern: str) -> str:
        with trio.fail_after(10):
            while True:
                for record in self.records:
                    if re.search(pattern, record.getMessage()):
                        return record.getMessage()
                await self._changed.wait()


@pytest.fixture
def logs():
    watcher = LogWatcher()
    root = logging.getLogger("codex_openai_proxy")
    old_level = root.level
    root.addHandler(watcher)
    root.setLevel(logging.DEBUG)
    yield watcher
    root.removeHandler(watcher)
    root.setLevel(old_level)


# -- image headers ------------------------------------------------------------------------------
# Images that are headers only: the proxy reads an image's size from its header and never
# decodes it, so these are what it sees of a real image of that size.


def png_header(width: int, height: int) -> bytes:
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 6, 0, 0, 0])
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk
            + zlib.crc32(chunk).to_bytes(4, "big") + b"\x00\x00\x00\x00IEND\xaeB`\x82")


def jpeg_header(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = (b"\xff\xc0\x00\x11\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big")
            + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01")
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def gif_header(width: int, height: int) -> bytes:
    return (b"GIF89a" + width.to_bytes(2, "little") + height.to_bytes(2, "little")
            + b"\x00\x00\x00;")


def webp_header(width: int, height: int, kind: str = "VP8X") -> bytes:
    if kind == "VP8 ":
        payload = (b"\x10\x02\x00\x9d\x01\x2a" + width.to_bytes(2, "little")
                   + height.to_bytes(2, "little"))
    elif kind == "VP8L":
        bits = (width - 1) | (height - 1) << 14
        payload = b"\x2f" + bits.to_bytes(4, "little") + b"\x00"
    else:
        payload = (b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little")
                   + (height - 1).to_bytes(3, "little"))
    chunk = kind.encode() + len(payload).to_bytes(4, "little") + payload
    return b"RIFF" + (4 + len(chunk)).to_bytes(4, "little") + b"WEBP" + chunk


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


# -- the real Codex CLI against the mock Responses API -------------------------------------------

REPO = TESTS.parent


@pytest.fixture(scope="session")
def real_codex_bin() -> str:
    """The pinned Codex CLI that scripts/test.sh installs (the npm Node wrapper)."""
    path = os.environ.get("CODEX_OPENAI_PROXY_TEST_CODEX") or str(
        REPO / ".tools" / "codex" / "node_modules" / ".bin" / "codex")
    if not os.access(path, os.X_OK):
        pytest.fail(f"the pinned Codex CLI is not installed at {path}: run bash scripts/test.sh")
    return path


@pytest.fixture
async def mock_upstream(nursery: trio.Nursery) -> Any:
    from mock_responses import MockResponses, serve_mock

    mock = MockResponses()
    await nursery.start(serve_mock, mock)
    return mock


@pytest.fixture
def start_real_proxy(nursery: trio.Nursery, real_codex_bin: str, mock_upstream: Any,
                     tmp_path: Path) -> Any:
    """Start a proxy running the real Codex, pointed at `mock_upstream` through CODEX_HOME."""
    from mock_responses import codex_home

    async def start(*, env: dict[str, str] | None = None, **settings: Any) -> Proxy:
        home = codex_home(tmp_path / "codex-home", mock_upstream.url)
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(tmp_path),
               "CODEX_HOME": str(home), "PROXY_API_KEY": API_KEY, **(env or {})}
        settings.setdefault("codex_bin", real_codex_bin)
        server = await nursery.start(partial(
            serve_proxy, replace(TEST_SETTINGS, **settings), env=env, handle_signals=False,
        ))
        return Proxy(server, httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60))

    return start


async def listening_url(server: trio.Process, timeout_s: float = 20) -> str:
    """The URL a `codex-openai-proxy` subprocess logs once it listens (its stderr)."""
    buffered = b""
    with trio.fail_after(timeout_s):
        while b"listening on " not in buffered or not buffered.endswith(b"\n"):
            data = await server.stderr.receive_some()
            assert data, f"the server exited early: {buffered.decode()}"
            buffered += data
    line = next(line for line in buffered.decode().splitlines() if "listening on " in line)
    return line.split("listening on ", 1)[1].split()[0]
