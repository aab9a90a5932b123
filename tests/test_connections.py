"""What the proxy does with its clients' connections: a client that stops reading holds Codex
back instead of the proxy buffering the answer, and is dropped (its run stopped) once it has
taken nothing for PROXY_WRITE_TIMEOUT_S; a connection the client asked to close is closed."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
from functools import partial

import hypercorn.trio
import pytest
import trio
import trio.testing

from codex_openai_proxy.connections import ABORT_ON_CLOSE
from codex_openai_proxy.server import hypercorn_config

from conftest import API_KEY, TEST_SETTINGS, chat_body, wait_dead


@pytest.fixture(params=["exec", "app-server"])
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


async def stalled_client(url: str, body: dict) -> socket.socket:
    """A client that sends its request and never reads a byte of the answer."""
    host, port = url.split("//")[1].rsplit(":", 1)
    sock = socket.socket()
    # A small receive window, so that the answer backs up into the proxy at once.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await trio.to_thread.run_sync(sock.connect, (host, int(port)))
    payload = json.dumps(body).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n"
                 b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
    return sock


async def wait_hung_up(sock: socket.socket, timeout: float) -> bool:
    """Whether the server ends the connection within `timeout` (read nothing meanwhile)."""
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP)  # POLLHUP and POLLERR (a reset) always count
    return bool(await trio.to_thread.run_sync(poller.poll, int(timeout * 1000)))


async def test_a_client_that_stops_reading_is_dropped_and_its_run_stopped(start_proxy,
                                                                         fake_codex):
    # Codex writes without pause, far more than any socket buffer holds.
    proxy = await start_proxy("drip", write_timeout_s=0.5, env={
        "FAKE_CODEX_DRIP_COUNT": "100000", "FAKE_CODEX_DRIP_MS": "0"})
    sock = await stalled_client(proxy.url, chat_body(stream=True))
    try:
        started = trio.current_time()
        assert await wait_hung_up(sock, 10), "the proxy kept waiting on a client that reads nothing"
        assert trio.current_time() - started < 0.5 + 3
        [run] = fake_codex.runs()
        await wait_dead(run["pid"])
        await proxy.manager.wait_idle()
        # Stopped mid-answer, as for any client that leaves: not left to write 100,000 messages.
        metrics = (await proxy.client.get("/metrics")).text
        assert 'codex_proxy_children_ended_total{reason="killed_on_disconnect"} 1.0' in metrics
        # The connection was reset: the client never gets a complete answer it did not read.
        received = b""
        with pytest.raises(ConnectionResetError):
            while data := sock.recv(65536):
                received += data
        assert b"[DONE]" not in received
    finally:
        sock.close()


async def test_a_client_reading_slowly_is_not_dropped(start_proxy):
    # Slow is not stalled: each send is taken, only late.
    proxy = await start_proxy("long", write_timeout_s=0.5,
                              env={"FAKE_CODEX_LONG_BYTES": str(2 * 1024 * 1024)})
    async with proxy.client.stream("POST", "/v1/chat/completions",
                                   json=chat_body(stream=True)) as response:
        received = b""
        async for data in response.aiter_bytes(65536):
            received += data
            await trio.sleep(0.05)  # a client busy with each piece it gets
    assert received.rstrip().endswith(b"data: [DONE]")


async def test_a_connection_the_client_asked_to_close_is_closed(proxy):
    host, port = proxy.url.split("//")[1].rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n")
        received = b""
        with trio.fail_after(5):  # it used to stay open until the client gave up
            while data := await stream.receive_some():
                received += data
    assert received.startswith(b"HTTP/1.1 200")
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["ok"] is True


def open_sockets() -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
    return count


async def test_a_connection_reset_before_its_response_ended_is_closed_at_once(nursery):
    # The race the stress suite hit once in a few runs: the client resets the connection
    # just before the proxy's last chunk, which goes out under a shield after the reset. The
    # web server then saw a finished exchange and kept the connection for the next request,
    # for the whole keep-alive time (75 s), from a client that had gone. This app makes the
    # two meet every time: its last chunk waits for the disconnect, and for the web server to
    # have settled after it.
    answered = trio.Event()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()  # the request (it has no body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        await trio.testing.wait_all_tasks_blocked()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        answered.set()

    before = open_sockets()
    [url] = await nursery.start(partial(hypercorn.trio.serve, app, hypercorn_config(
        TEST_SETTINGS)))
    host, port = url.split("//")[1].rsplit(":", 1)
    client = socket.create_connection((host, int(port)))
    client.sendall(b"GET / HTTP/1.1\r\nHost: proxy\r\n\r\n")
    received = b""
    while not received.endswith(b"first\r\n"):  # the first chunk, chunked
        received += await trio.to_thread.run_sync(client.recv, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, ABORT_ON_CLOSE)
    client.close()  # a reset
    await answered.wait()
    # Only the kernel knows the server's descriptors: polled, bounded far below 75 s.
    with trio.fail_after(5):
        while open_sockets() > before + 1:  # the listening socket stays
            await trio.sleep(0.02)
