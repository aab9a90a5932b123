"""The lifecycle guarantee: whatever ends a request (the answer, a disconnect, the deadline, a
shutdown), its Codex process group is stopped and reaped, and nothing is left behind.

The `no_leftover_children` fixture in conftest checks after every test that no child of this
process, running or zombie, remains; the tests here also check grandchildren by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial

import httpx
import pytest
import trio

from conftest import (
    AUTH,
    chat_body,
    delta,
    is_ready,
    listening_url,
    open_stream,
    process_state,
    wait_dead,
)


@pytest.fixture(params=["exec", "app-server"])
def engine(request: pytest.FixtureRequest) -> str:
    """Every test here holds on both engines (the fake Codex plays both)."""
    return request.param

async def _leader_pid(proxy) -> int:
    [run] = proxy.manager.active
    return run.pid


async def test_disconnect_mid_stream_kills_child_and_grandchild(start_proxy, fake_codex):
    proxy = await start_proxy("grandchild")
    async with open_stream(proxy.client) as s:
        await s.wait_for(is_ready)
        leader = await _leader_pid(proxy)
        pids = fake_codex.pids(leader)
        assert len(pids) == 2 and all(process_state(pid) for pid in pids)
    # The client is gone; the proxy must notice and stop the whole group on its own.
    for pid in pids:
        await wait_dead(pid)
    await proxy.manager.wait_idle()
    assert process_state(leader) is None, "the leader must be reaped, not left a zombie"
    response = await proxy.client.get("/healthz")
    assert response.json()["runs"]["active"] == 0


async def test_a_child_that_ignores_sigint_is_killed_after_the_grace(start_proxy, fake_codex):
    proxy = await start_proxy("ignore_signals", kill_grace_s=0.3)
    async with open_stream(proxy.client) as s:
        await s.wait_for(is_ready)
        leader = await _leader_pid(proxy)
        started = trio.current_time()
    await wait_dead(leader)
    waited = trio.current_time() - started
    # SIGINT was ignored, so only SIGKILL after the grace can have ended it.
    assert waited >= 0.3
    await proxy.manager.wait_idle()
    assert process_state(leader) is None


async def test_a_stream_past_the_deadline_gets_a_timeout_error(start_proxy):
    proxy = await start_proxy("hang", request_timeout_s=1)
    async with open_stream(proxy.client) as s:
        events = await s.read_to_end()
    assert delta(events[0])["role"] == "assistant"
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "timeout"
    await proxy.manager.wait_idle()


async def test_a_non_stream_request_past_the_deadline_gets_504(start_proxy):
    proxy = await start_proxy("hang", request_timeout_s=1)
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    assert response.headers["x-should-retry"] == "false"


async def test_the_deadline_holds_while_the_client_reads_nothing(start_proxy, fake_codex):
    # A client that stops reading must not keep the child alive past the deadline.
    proxy = await start_proxy("grandchild", request_timeout_s=1)
    async with open_stream(proxy.client) as s:
        await s.wait_for(is_ready)
        pids = fake_codex.pids(await _leader_pid(proxy))
        for pid in pids:  # the stream stays open and unread meanwhile
            await wait_dead(pid)
        events = await s.read_to_end()
    assert events[-2]["error"]["code"] == "timeout"


async def test_requests_queue_in_order_then_get_429(start_proxy):
    proxy = await start_proxy("hang", max_concurrent=1, queue_timeout_s=1)
    async with open_stream(proxy.client) as first:
        await first.wait_for(is_ready)
        response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "too_many_concurrent_runs"
    assert int(response.headers["retry-after"]) >= 1


async def test_queued_requests_get_slots_in_arrival_order(start_proxy, fake_codex):
    proxy = await start_proxy("normal", max_concurrent=1, queue_timeout_s=20)
    order: list[str] = []

    async def ask(name: str) -> None:
        response = await proxy.client.post("/v1/chat/completions", json=chat_body(name))
        assert response.status_code == 200
        order.append(name)

    # The holder hangs up first (inner context), then its slot goes to the queue, one
    # request at a time, in order, while the nursery waits for all three.
    async with (trio.open_nursery() as nursery,
                open_stream(proxy.client, chat_body("fake-scenario:hang")) as holder):
        await holder.wait_for(is_ready)
        for count, name in enumerate(("first", "second", "third"), start=1):
            nursery.start_soon(ask, name)
            await proxy.manager.wait_queued(count)
    assert order == ["first", "second", "third"]
    prompts = [run["stdin"] for run in fake_codex.runs()]
    assert prompts == ["fake-scenario:hang", "first", "second", "third"]


async def test_a_client_that_leaves_the_queue_frees_its_place(start_proxy):
    proxy = await start_proxy("hang", max_concurrent=1, queue_timeout_s=20)
    async with open_stream(proxy.client) as first:
        await first.wait_for(is_ready)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(proxy.client.post, "/v1/chat/completions",
                                       json=chat_body()))
            await proxy.manager.wait_queued(1)
            nursery.cancel_scope.cancel()  # the queued client hangs up
        await proxy.manager.wait_queued(0)
        assert len(proxy.manager.active) == 1
    await proxy.manager.wait_idle()
    # The slot is free again: a new request runs at once.
    async with open_stream(proxy.client) as second:
        await second.wait_for(is_ready)


async def test_shutdown_with_streams_in_flight(start_proxy, fake_codex):
    proxy = await start_proxy("grandchild", max_concurrent=2, queue_timeout_s=20)
    async with open_stream(proxy.client) as one, open_stream(proxy.client) as two:
        await one.wait_for(is_ready)
        await two.wait_for(is_ready)
        async with trio.open_nursery() as nursery:
            async def queued() -> None:
                response = await proxy.client.post("/v1/chat/completions", json=chat_body())
                assert response.status_code == 503
                assert response.json()["error"]["code"] == "shutting_down"

            nursery.start_soon(queued)
            await proxy.manager.wait_queued(1)
            pids = [pid for run in proxy.manager.active for pid in fake_codex.pids(run.pid)]
            proxy.server.shut_down()
        for stream in (one, two):
            events = await stream.read_to_end()
            assert events[-2]["error"]["code"] == "shutting_down"
            assert events[-1] == "[DONE]"
    for pid in pids:
        await wait_dead(pid)
    await proxy.manager.wait_idle()


async def test_sigterm_stops_the_server_and_every_child(fake_codex, tmp_path):
    env = {**os.environ, **fake_codex.env, "FAKE_CODEX_SCENARIO": "grandchild",
           "PROXY_KILL_GRACE_S": "0.5", "PORT": "0", "CODEX_ENGINE": "exec"}
    server = await trio.lowlevel.open_process(
        [sys.executable, "-m", "codex_openai_proxy"], env=env,
        stderr=subprocess.PIPE, start_new_session=True)
    try:
        url = await _listening_url(server)
        async with (httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as client,
                    open_stream(client) as s):
            await s.wait_for(is_ready)
            [record] = fake_codex.runs()
            pids = fake_codex.pids(record["pid"])
            server.send_signal(signal.SIGTERM)
            events = await s.read_to_end()
        assert events[-2]["error"]["code"] == "shutting_down"
        with trio.fail_after(10):
            assert await server.wait() == 0
        for pid in pids:
            await wait_dead(pid)
    finally:
        with trio.CancelScope(shield=True):
            if server.returncode is None:
                os.killpg(server.pid, signal.SIGKILL)
            await server.wait()


# Kept under its old name for the tests that import it from here.
_listening_url = listening_url
