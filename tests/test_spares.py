"""Warm spares: app-server children started and initialized ahead of demand. A request takes
one and owns it exactly as a child of its own (stopped on disconnect, deadline, shutdown); a
spare is never reused, a fresh one takes its place, and spares started before a SIGHUP never
serve a request after it. The fake Codex plays `codex app-server`."""

from __future__ import annotations

import os
import signal
import sys

import pytest
import trio

from codex_openai_proxy.child import ChildLaunch, spawn_child
from codex_openai_proxy.engines import SpareLauncher
from codex_openai_proxy.engines.app_server import WarmUpFailed
from codex_openai_proxy.spares import SparePool

from conftest import chat_body, is_ready, open_stream, process_state, wait_dead


@pytest.fixture
def engine() -> str:
    return "app-server"


def spare_runs(fake_codex) -> list[dict]:
    """The app-servers started, idle ones included, but the seed of the children's homes
    (the first, which the proxy starts and lets exit before any spare)."""
    return [run for run in fake_codex.runs(idle=True) if run["argv"][0] == "app-server"][1:]


def methods(record: dict) -> list[str]:
    return [request["method"] for request in record["requests"]]


async def warm_proxy(start_proxy, scenario: str = "normal", **settings):
    proxy = await start_proxy(scenario, warm_children=2, **settings)
    await proxy.manager.spares.wait_ready(2)
    return proxy


async def test_spares_wait_initialized_for_a_request(start_proxy, fake_codex):
    await warm_proxy(start_proxy)
    # A spare is ready once the proxy has sent `initialized`; the fake Codex, another
    # process, records it as it reads it: its records are polled until they say so.
    with trio.fail_after(10):
        while not all(methods(run) == ["initialize", "initialized"]
                      for run in spare_runs(fake_codex)):
            await trio.sleep(0.01)
    runs = spare_runs(fake_codex)
    assert len(runs) == 2
    assert all(process_state(run["pid"]) for run in runs)


async def test_a_request_takes_a_spare_and_a_fresh_one_takes_its_place(start_proxy,
                                                                       fake_codex):
    proxy = await warm_proxy(start_proxy)
    spares = {run["pid"] for run in spare_runs(fake_codex)}
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from fake Codex."
    await proxy.manager.wait_idle()
    [served] = [run for run in spare_runs(fake_codex) if "turn/start" in methods(run)]
    assert served["pid"] in spares
    # Initialized once, as a spare; the request began at its thread.
    assert methods(served) == ["initialize", "initialized", "thread/resume", "turn/start"]
    await wait_dead(served["pid"])  # never reused
    await proxy.manager.spares.wait_ready(2)
    assert len(spare_runs(fake_codex)) == 3


async def test_a_taken_spare_is_stopped_when_the_client_leaves(start_proxy, fake_codex):
    proxy = await warm_proxy(start_proxy)
    spares = {run["pid"] for run in spare_runs(fake_codex)}
    async with open_stream(proxy.client, chat_body("fake-scenario:grandchild")) as s:
        await s.wait_for(is_ready)
        [run] = proxy.manager.active
        assert run.pid in spares
        pids = fake_codex.pids(run.pid)
        assert len(pids) == 2  # the spare and its grandchild
    for pid in pids:
        await wait_dead(pid)
    await proxy.manager.wait_idle()


async def test_a_taken_spare_meets_the_deadline(start_proxy, fake_codex):
    proxy = await warm_proxy(start_proxy, request_timeout_s=1)
    async with open_stream(proxy.client, chat_body("fake-scenario:hang")) as s:
        events = await s.read_to_end()
    assert events[-2]["error"]["code"] == "timeout"
    await proxy.manager.wait_idle()


async def test_shutdown_stops_spares_and_taken_spares(start_proxy, fake_codex):
    proxy = await warm_proxy(start_proxy)
    async with open_stream(proxy.client, chat_body("fake-scenario:hang")) as s:
        await s.wait_for(is_ready)
        pids = [run["pid"] for run in spare_runs(fake_codex)]
        proxy.server.shut_down()
        events = await s.read_to_end()
    assert events[-2]["error"]["code"] == "shutting_down"
    for pid in pids:
        await wait_dead(pid)


async def test_spares_from_before_a_reload_serve_nothing_after_it(start_proxy, fake_codex):
    proxy = await warm_proxy(start_proxy)
    before = {run["pid"] for run in spare_runs(fake_codex)}
    await proxy.server.reload_catalog()  # what SIGHUP does
    for pid in before:
        await wait_dead(pid)
    await proxy.manager.spares.wait_ready(2)
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    [served] = [run for run in spare_runs(fake_codex) if "turn/start" in methods(run)]
    assert served["pid"] not in before


async def test_a_spare_that_dies_while_idle_is_replaced(start_proxy, fake_codex):
    proxy = await warm_proxy(start_proxy)
    victim = spare_runs(fake_codex)[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    await proxy.manager.spares.wait_ready(1)  # noticed: its output ended
    await proxy.manager.spares.wait_ready(2)  # replaced (after a short wait)
    assert len(spare_runs(fake_codex)) == 3
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200


async def test_no_spares_for_the_exec_engine(start_proxy, fake_codex):
    proxy = await start_proxy(engine="exec", warm_children=2)
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert [run["argv"][0] for run in fake_codex.runs()] == ["exec"]
    assert proxy.manager.spares.ready == 0


@pytest.mark.real_codex
async def test_a_real_warm_codex_serves_the_same_lean_request(start_real_proxy, mock_upstream):
    proxy = await start_real_proxy(engine="app-server", warm_children=1)
    await proxy.manager.spares.wait_ready(1)
    body = {"model": "gpt-5.5", "messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Say hi"}]}
    for _ in range(2):  # the second comes from the spare started in the first's place
        await proxy.manager.spares.wait_ready(1)
        response = await proxy.client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "Hello from the mock."
    first, second = mock_upstream.requests
    assert first.body["prompt_cache_key"] == second.body["prompt_cache_key"]
    assert first.body["input"] == second.body["input"]
    assert [item["role"] for item in first.body["input"]] == ["developer", "user"]
    assert first.tool_names() == []


async def test_a_codex_that_refuses_initialize_fails_requests_not_the_proxy(start_proxy):
    # The seed of the children's homes and every spare fail to initialize: the proxy starts
    # all the same (children from empty homes, no spares), and a request gets Codex's refusal.
    proxy = await start_proxy("refuse_initialize", warm_children=2)
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "codex_error"
    assert (await proxy.client.get("/healthz")).json()["spares"]["ready"] == 0


async def test_a_spare_refused_as_the_pool_closes_does_not_take_the_server_down(tmp_path):
    # The race CI once hit at shutdown: a spare's warm-up fails at the very moment the pool
    # is cancelled. The failure and the cancellation reach the pool together; the failure
    # must be logged, not left to crash the server once the cancellation is absorbed.
    warming, refuse = trio.Event(), trio.Event()

    async def warm_up(child):
        warming.set()
        with trio.CancelScope(shield=True):  # the refusal comes after the cancellation
            await refuse.wait()
        raise WarmUpFailed("Codex app-server refused initialize: fake refusal")

    def launch(directory):
        directory.mkdir()
        return ChildLaunch((sys.executable, "-c", "import time; time.sleep(60)"), directory,
                           dict(os.environ), directory)

    pool = SparePool(1, tmp_path, kill_grace_s=1, warm_up_timeout_s=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        pool.use(SpareLauncher(key="key", launch=launch, warm_up=warm_up))
        await warming.wait()
        pool.close()
        refuse.set()
    assert pool.ready == 0
    assert list(tmp_path.iterdir()) == []  # the spare's child stopped, its folder removed


async def test_a_refusal_as_the_owner_is_cancelled_reaches_the_owner_as_raised(tmp_path):
    # The seed of the children's homes meeting a shutdown: `initialize` refused just as the
    # server's scope is cancelled. The refusal must reach `seed_home`'s `except WarmUpFailed`
    # (not come up in a group with the cancellation, to crash the server once the Cancelled is
    # absorbed), and the cancellation must still end the task at its next checkpoint.
    caught = []
    launch = ChildLaunch((sys.executable, "-c", "import time; time.sleep(60)"), tmp_path)
    with trio.CancelScope() as shutdown:
        try:
            async with spawn_child(launch, kill_grace_s=1) as child:
                shutdown.cancel()
                raise WarmUpFailed("Codex app-server refused initialize: fake refusal")
        except WarmUpFailed as error:
            caught.append(error)
        await trio.lowlevel.checkpoint()
        raise AssertionError("the cancellation was lost")
    assert shutdown.cancelled_caught and len(caught) == 1
    await wait_dead(child.pid)
