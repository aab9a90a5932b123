"""SIGTERM ends the proxy in bounded time whatever its clients do, and no signal during the
shutdown cuts it short before every child is reaped.

The proxy runs as a real `python -m codex_openai_proxy` process, signalled as systemd or a
terminal would; its Codex children are its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from codex_openai_proxy.server import SHUTDOWN_SLACK_S

from conftest import API_KEY, AUTH, chat_body, is_ready, listening_url, open_stream, wait_dead

KILL_GRACE_S = 0.5
#: How long after SIGTERM the proxy may still run: the kill grace, the slack the clients get,
#: and a moment for SIGKILL and the last clean-up.
EXIT_BOUND_S = KILL_GRACE_S + SHUTDOWN_SLACK_S + 1.5


async def start_server(fake_codex, **env: str) -> tuple[trio.Process, str]:
    server = await trio.lowlevel.open_process(
        [sys.executable, "-m", "codex_openai_proxy"],
        env={**os.environ, **fake_codex.env, "PORT": "0", "CODEX_ENGINE": "exec",
             "PROXY_KILL_GRACE_S": str(KILL_GRACE_S), **env},
        stderr=subprocess.PIPE, start_new_session=True)
    try:
        return server, await listening_url(server)
    except BaseException:
        await kill(server)
        raise


async def kill(server: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        if server.returncode is None:
            os.killpg(server.pid, signal.SIGKILL)
        await server.wait()


async def stderr_of(server: trio.Process) -> str:
    chunks = []
    while data := await server.stderr.receive_some():
        chunks.append(data)
    return b"".join(chunks).decode()


async def wait_blocked_writing(pid: int) -> None:
    """Until `pid` is blocked writing to a full pipe (its reader has stopped taking)."""
    with trio.fail_after(10):
        while "pipe_write" not in Path(f"/proc/{pid}/wchan").read_text():
            await trio.sleep(0.02)


async def test_sigterm_ends_the_proxy_in_bounded_time_though_a_client_reads_nothing(
        fake_codex):
    server, url = await start_server(fake_codex, FAKE_CODEX_SCENARIO="drip",
                                     FAKE_CODEX_DRIP_COUNT="100000", FAKE_CODEX_DRIP_MS="0")
    try:
        host, port = url.split("//")[1].rsplit(":", 1)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect((host, int(port)))
        body = json.dumps(chat_body(stream=True)).encode()
        client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n"
                       b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                       b"Content-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body) + body)
        [pid] = await fake_codex.wait_for_runs(1)
        # The client's window, the proxy's socket, the proxy and the pipe are all full now.
        await wait_blocked_writing(pid)
        server.send_signal(signal.SIGTERM)
        with trio.fail_after(EXIT_BOUND_S):  # it used to wait on the client forever
            assert await server.wait() == 0
        await wait_dead(pid)
        assert "disconnected" in await stderr_of(server)
        client.close()
    finally:
        await kill(server)


async def test_signals_during_the_shutdown_do_not_cut_it_short(fake_codex):
    # A child that ignores SIGINT keeps the shutdown waiting for the kill grace: meanwhile the
    # impatient signal again, press Ctrl-C, or `systemctl reload`.
    server, url = await start_server(fake_codex, FAKE_CODEX_SCENARIO="ignore_signals",
                                     PROXY_KILL_GRACE_S="2")
    try:
        async with (httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as client,
                    open_stream(client) as stream):
            await stream.wait_for(is_ready)
            [run] = fake_codex.runs()
            server.send_signal(signal.SIGTERM)
            await stream.wait_for(lambda event: isinstance(event, dict) and "error" in event)
            # The child has been asked to stop and ignores it: the proxy waits for the grace.
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                server.send_signal(signum)
            with trio.fail_after(2 + SHUTDOWN_SLACK_S + 1.5):
                assert await server.wait() == 0, "a signal ended the proxy mid-shutdown"
        await wait_dead(run["pid"])
        said = await stderr_of(server)
        assert said.count("while shutting down: the shutdown carries on") == 3, said
    finally:
        await kill(server)


async def test_an_idle_keep_alive_connection_does_not_hold_the_exit(fake_codex):
    server, url = await start_server(fake_codex)
    try:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as client:
            response = await client.post("/v1/chat/completions", json=chat_body())
            assert response.status_code == 200
            # The client keeps its connection open, idle, for its next request.
            server.send_signal(signal.SIGTERM)
            with trio.fail_after(1.5):  # it used to wait for the whole graceful timeout
                assert await server.wait() == 0
    finally:
        await kill(server)


def half_closed_connections(port: int) -> int:
    """Connections to `port` the client has closed and the server not yet (CLOSE-WAIT)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                count += int(local.rsplit(":", 1)[1], 16) == port and state == "08"
    return count


async def test_a_connection_the_client_closed_is_closed_at_once(fake_codex):
    # Not when the keep-alive time is up (75 s): until then each would hold a descriptor.
    server, url = await start_server(fake_codex)
    try:
        limits = httpx.Limits(max_keepalive_connections=0)  # closed after each response
        async with httpx.AsyncClient(base_url=url, headers=AUTH, limits=limits) as client:
            for _ in range(3):
                response = await client.post("/v1/chat/completions", json=chat_body())
                assert response.status_code == 200
        # The kernel's table is the only view of it: polled, bounded.
        port = int(url.rsplit(":", 1)[1])
        with trio.fail_after(5):
            while half_closed_connections(port):
                await trio.sleep(0.02)
    finally:
        await kill(server)
