"""What only the app-server engine does, with the fake Codex playing `codex app-server`: each
protocol step's own deadline, and the interrupt before the signals."""

from __future__ import annotations

import pytest
import trio
from test_errors_e2e import assert_error

from codex_openai_proxy import runs

from conftest import chat_body, is_ready, open_stream, process_state, wait_dead


@pytest.fixture
def engine() -> str:
    return "app-server"


@pytest.mark.parametrize("scenario", ["stall_initialize", "stall_thread"])
async def test_an_app_server_that_stops_answering_fails_fast_and_frees_its_slot(
        start_proxy, fake_codex, scenario):
    # 0.169.0 never answers thread/start for some inputs; the step's own deadline ends the run
    # long before the request's, and the slot is free again for the next request.
    proxy = await start_proxy(scenario, engine="app-server", reply_timeout_s=0.5,
                              request_timeout_s=30, max_concurrent=1)
    started = trio.current_time()
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    error = assert_error(response, 502, code="codex_error")
    awaited = "initialize" if scenario == "stall_initialize" else "thread/resume"
    assert f"did not answer {awaited} within 0.5 s" in error["message"]
    assert trio.current_time() - started < 5
    await proxy.manager.wait_idle()
    async with open_stream(proxy.client, chat_body("fake-scenario:normal")) as s:
        events = await s.read_to_end()
    # The fake stalls again: a second 502 at once, not a 429 for a slot still taken.
    assert events[-2]["error"]["code"] == "codex_error"


async def test_a_slow_hand_over_neither_cuts_it_short_nor_counts_against_the_next_step(
        start_proxy, fake_codex, monkeypatch):
    # Handing the client what an answer brought may take longer than a step's deadline (a
    # client taking its time). It used to run under the answered step's deadline: cut short
    # by it, and the next step failed at once on the stale deadline ("did not answer
    # thread/resume"), though it had only just been asked.
    real_deliver = runs.AnswerSink.deliver
    slowed: list[float] = []

    async def slow_client(self, events):
        if not slowed:  # the first hand-over: what the answer to `initialize` brought
            slowed.append(0.6)
            await trio.sleep(0.6)
        await real_deliver(self, events)

    monkeypatch.setattr(runs.AnswerSink, "deliver", slow_client)
    proxy = await start_proxy(reply_timeout_s=0.5)
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello from fake Codex."
    assert slowed == [0.6]
    [record] = fake_codex.runs()
    assert [r.get("method") for r in record["requests"]][:4] == [
        "initialize", "initialized", "thread/resume", "turn/start"]


async def test_a_turn_is_interrupted_before_any_signal(start_proxy, fake_codex):
    proxy = await start_proxy("hang", kill_grace_s=5)
    async with open_stream(proxy.client) as s:
        await s.wait_for(is_ready)
        [run] = proxy.manager.active
        leader = run.pid
        started = trio.current_time()
    await wait_dead(leader)
    # Interrupted, then its stdin closed: the fake ends by itself, long before the grace.
    assert trio.current_time() - started < 3
    await proxy.manager.wait_idle()
    [record] = fake_codex.runs()
    assert [r["method"] for r in record["requests"]][-1] == "turn/interrupt"
    assert process_state(leader) is None


async def test_a_child_that_ignores_the_interrupt_is_stopped_by_sigint(start_proxy, fake_codex):
    proxy = await start_proxy("ignore_interrupt", kill_grace_s=5)
    async with open_stream(proxy.client) as s:
        await s.wait_for(is_ready)
        [run] = proxy.manager.active
        leader = run.pid
        started = trio.current_time()
    await wait_dead(leader)
    # The interrupt went unanswered for its second; SIGINT then ended the child, long before
    # the grace that SIGKILL waits for.
    assert 0.9 < trio.current_time() - started < 4
    await proxy.manager.wait_idle()
    [record] = fake_codex.runs()
    assert "turn/interrupt" in [r.get("method") for r in record["requests"]]
