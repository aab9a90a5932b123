"""What the proxy does with its clients' connections: a client that stops reading holds Codex
back instead of the proxy buffering the answer, and is dropped (its run stopped) once it has
taken nothing for PROXY_WRITE_TIMEOUT_S; a connection the client asked to close is closed."""

from __future__ import annotations

import json
import select
import socket

import pytest
import trio

from conftest import API_KEY, chat_body, wait_dead


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
