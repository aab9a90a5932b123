"""Unit tests for app_server_protocol.py: one `codex app-server` JSON-RPC turn, sans I/O.

The fixtures follow what codex-cli 0.169.0 actually prints on stdout.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from codex_openai_proxy import __version__
from codex_openai_proxy.app_server_protocol import (
    METHOD_NOT_FOUND,
    TRANSITIONS,
    AppServerSession,
    DynamicTool,
    Phase,
    ProtocolMisuse,
    Step,
    TurnPlan,
    encode,
)
from codex_openai_proxy.codex_events import (
    LOGIN_HINT,
    MessageDelta,
    MessageDone,
    Notice,
    PlanLimitsUpdated,
    ReasoningDelta,
    ReasoningDone,
    ResponseCompleted,
    ToolCallRequested,
    TurnCompleted,
    TurnFailed,
    Usage,
)

THREAD_ID = "01a2b3c4-0000-7000-8000-000000000001"
TURN_ID = "01a2b3c4-0000-7000-8000-000000000002"
UPSTREAM_ERROR = "stream disconnected before completion: upstream exploded"


def line(message: dict[str, Any]) -> str:
    return json.dumps(message) + "\n"


def response(request_id: int, result: dict[str, Any]) -> str:
    return line({"id": request_id, "result": result})


def notification(method: str, params: dict[str, Any]) -> str:
    return line({"method": method, "params": params})


def thread_result() -> dict[str, Any]:
    return {"thread": {"id": THREAD_ID, "preview": "", "ephemeral": True,
                       "modelProvider": "openai", "cwd": "/tmp/work"},
            "model": "gpt-5.4", "modelProvider": "openai", "cwd": "/tmp/work",
            "approvalPolicy": "never", "sandbox": {"type": "readOnly"},
            "reasoningEffort": None}


def turn_result() -> dict[str, Any]:
    return {"turn": {"id": TURN_ID, "items": [], "status": "inProgress", "error": None}}


def ids() -> dict[str, str]:
    return {"threadId": THREAD_ID, "turnId": TURN_ID}


def message_delta(item_id: str, delta: str) -> str:
    return notification("item/agentMessage/delta", {**ids(), "itemId": item_id, "delta": delta})


def reasoning_delta(item_id: str, delta: str, index: int) -> str:
    return notification("item/reasoning/summaryTextDelta",
                        {**ids(), "itemId": item_id, "delta": delta, "summaryIndex": index})


def item_completed(item: dict[str, Any]) -> str:
    return notification("item/completed", {**ids(), "item": item})


def token_usage(total: dict[str, Any], last: dict[str, Any] | None = None) -> str:
    return notification("thread/tokenUsage/updated", {
        **ids(), "tokenUsage": {"total": total, "last": last or total,
                                "modelContextWindow": 258400}})


TOTAL = {"totalTokens": 15, "inputTokens": 10, "cachedInputTokens": 2,
         "cacheWriteInputTokens": 0, "outputTokens": 5, "reasoningOutputTokens": 1}
LAST = {"totalTokens": 7, "inputTokens": 4, "cachedInputTokens": 0,
        "cacheWriteInputTokens": 0, "outputTokens": 3, "reasoningOutputTokens": 0}


def turn_completed(status: str, error: dict[str, Any] | None = None) -> str:
    return notification("turn/completed", {
        "threadId": THREAD_ID,
        "turn": {"id": TURN_ID, "items": [], "status": status, "error": error}})


def error_notification(message: str, will_retry: bool) -> str:
    return notification("error", {**ids(), "error": {"message": message,
                                                     "codexErrorInfo": None,
                                                     "additionalDetails": None},
                                  "willRetry": will_retry})


def tool_call(request_id: int, arguments: Any, call_id: str = "call_1",
              tool: str = "get_weather") -> str:
    return line({"method": "item/tool/call", "id": request_id, "params": {
        **ids(), "callId": call_id, "namespace": None, "tool": tool, "arguments": arguments}})


def function_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    """A `function_call` output item as the Responses API gives it: `arguments` is text."""
    return {"type": "function_call", "id": f"fc_{call_id}", "name": name,
            "arguments": arguments, "call_id": call_id}


def rollout_item(item: Any) -> str:
    """A `response_item` line Codex appends to the thread's rollout file."""
    return json.dumps({"timestamp": "2026-11-25T16:05:21.218Z", "type": "response_item",
                       "payload": item})


def rollout_usage(usage: dict[str, Any] | None, response_id: str = "resp_1") -> str:
    """The `token_usage_record` line that follows a model response in the rollout file."""
    return json.dumps({"timestamp": "2026-11-25T16:05:21.222Z", "type": "token_usage_record",
                       "payload": {"thread_id": THREAD_ID, "turn_id": TURN_ID,
                                   "response_id": response_id, "usage": usage}})


RESPONSE_USAGE = {"input_tokens": 120, "cached_input_tokens": 64, "cache_write_input_tokens": 9,
                  "output_tokens": 51, "reasoning_output_tokens": 17, "total_tokens": 171}
#: RESPONSE_USAGE as the proxy counts it (total and cache writes are not counted).
RESPONSE_USAGE_COUNTED = Usage(input_tokens=120, cached_input_tokens=64, output_tokens=51,
                               reasoning_output_tokens=17)
WEATHER = DynamicTool("get_weather", "The weather in a city.", {"type": "object"})


def plan(**fields: Any) -> TurnPlan:
    return TurnPlan(**{"thread_id": THREAD_ID, "cwd": "/tmp/work", **fields})


def handshake(session: AppServerSession) -> list[dict[str, Any]]:
    """Drive the session to a running turn; the messages it wrote, in order."""
    written = list(session.start())
    for reply in (response(written[-1]["id"], {"userAgent": "codex/0.169.0"}), None, None):
        if reply is None:
            method = written[-1]["method"]
            reply = response(written[-1]["id"],
                             thread_result() if method == "thread/resume" else turn_result())
        outgoing, events = session.feed(reply)
        assert events == []
        written += outgoing
    return written


def running(**fields: Any) -> AppServerSession:
    session = AppServerSession(plan(**fields))
    handshake(session)
    assert session.turn_id == TURN_ID
    return session


def feed_all(session: AppServerSession, lines: list[str]) -> list[Any]:
    events: list[Any] = []
    for raw in lines:
        outgoing, new = session.feed(raw)
        assert outgoing == []
        events += new
    return events


# -- the handshake -----------------------------------------------------------------------------


def test_start_sends_initialize_with_experimental_api() -> None:
    session = AppServerSession(plan())
    assert session.start() == [{
        "id": 1,
        "method": "initialize",
        "params": {
            "clientInfo": {"name": "codex-openai-proxy", "title": "codex-openai-proxy",
                           "version": __version__},
            "capabilities": {"experimentalApi": True},
        },
    }]


def test_initialize_response_sends_initialized_then_thread_resume() -> None:
    session = AppServerSession(plan())
    (initialize,) = session.start()
    outgoing, events = session.feed(response(initialize["id"], {"userAgent": "codex/0.169.0"}))
    assert events == []
    assert outgoing == [
        {"method": "initialized"},
        # The conversation's own thread, from the rollout file written for it: its id is
        # the prompt cache key upstream.
        {"id": 2, "method": "thread/resume", "params": {
            "threadId": THREAD_ID, "cwd": "/tmp/work", "sandbox": "read-only",
            "approvalPolicy": "never", "excludeTurns": True}},
    ]
    assert "id" not in outgoing[0]


def test_thread_resume_carries_the_model_when_given() -> None:
    written = handshake(AppServerSession(plan(model="gpt-5.5")))
    assert written[2]["method"] == "thread/resume"
    assert written[2]["params"]["model"] == "gpt-5.5"


def test_thread_resume_response_sends_turn_start_with_no_input() -> None:
    session = AppServerSession(plan())
    written = handshake(session)
    assert session.thread_id == THREAD_ID
    # The whole conversation is the thread's history: the turn adds nothing to it.
    assert written[3] == {"id": 3, "method": "turn/start",
                          "params": {"threadId": THREAD_ID, "input": []}}


def test_turn_start_carries_effort_summary_and_output_schema_when_given() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    written = handshake(AppServerSession(plan(effort="high", summary="auto",
                                              output_schema=schema)))
    assert written[3]["params"] == {"threadId": THREAD_ID, "input": [], "effort": "high",
                                    "summary": "auto", "outputSchema": schema}


def test_the_handshake_is_strictly_ordered() -> None:
    written = handshake(AppServerSession(plan()))
    assert [m["method"] for m in written] == [
        "initialize", "initialized", "thread/resume", "turn/start"]


def test_request_ids_are_unique_and_increasing() -> None:
    session = AppServerSession(plan())
    written = handshake(session)
    written += session.interrupt()
    request_ids = [m["id"] for m in written if "id" in m]
    assert [m["method"] for m in written if "id" in m] == [
        "initialize", "thread/resume", "turn/start", "turn/interrupt"]
    assert len(set(request_ids)) == len(request_ids)
    assert request_ids == sorted(request_ids)
    assert all(isinstance(i, int) for i in request_ids)


def test_the_turn_id_comes_from_turn_started_too() -> None:
    session = AppServerSession(plan())
    written = session.start()
    written += session.feed(response(1, {}))[0]
    written += session.feed(response(2, thread_result()))[0]
    assert session.interrupt() == []
    outgoing, events = session.feed(notification("turn/started", {
        "threadId": THREAD_ID, "turn": {"id": TURN_ID, "status": "inProgress"}}))
    assert (outgoing, events) == ([], [])
    assert session.turn_id == TURN_ID
    assert session.interrupt()[0]["params"] == {"threadId": THREAD_ID, "turnId": TURN_ID}


# -- streaming and items -----------------------------------------------------------------------


def test_message_delta() -> None:
    session = running()
    assert session.feed(message_delta("msg_1", "Hello")) == (
        [], [MessageDelta("msg_1", "Hello")])


def test_reasoning_deltas_are_keyed_per_summary_part() -> None:
    session = running()
    events = feed_all(session, [
        reasoning_delta("rs_1", "Thinking", 0),
        reasoning_delta("rs_1", "More", 1),
    ])
    assert events == [ReasoningDelta("rs_1#0", "Thinking"), ReasoningDelta("rs_1#1", "More")]
    assert events[0].item_id != events[1].item_id


def test_completed_agent_message() -> None:
    session = running()
    assert feed_all(session, [item_completed(
        {"type": "agentMessage", "id": "msg_1", "text": "Hello from the mock.",
         "phase": None})]) == [MessageDone("msg_1", "Hello from the mock.")]


def test_completed_reasoning_is_split_into_its_summary_parts() -> None:
    session = running()
    events = feed_all(session, [item_completed(
        {"type": "reasoning", "id": "rs_1", "summary": ["Thinking it over.", "Then deciding."],
         "content": []})])
    assert events == [ReasoningDone("rs_1#0", "Thinking it over."),
                      ReasoningDone("rs_1#1", "Then deciding.")]


def test_reasoning_delta_and_done_share_a_key() -> None:
    session = running()
    (delta,) = feed_all(session, [reasoning_delta("rs_1", "Thinking", 0)])
    (done,) = feed_all(session, [item_completed(
        {"type": "reasoning", "id": "rs_1", "summary": ["Thinking it over."], "content": []})])
    assert delta.item_id == done.item_id


def test_reasoning_without_summary_says_nothing() -> None:
    session = running()
    assert feed_all(session, [item_completed(
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": []})]) == []


def test_other_completed_items_are_notices() -> None:
    session = running()
    assert feed_all(session, [item_completed(
        {"type": "userMessage", "id": "u_1",
         "content": [{"type": "text", "text": "Say hello."}]})]) == [Notice("userMessage", "")]


@pytest.mark.parametrize("method, params", [
    ("configWarning", {"summary": "unknown key", "details": None}),
    ("warning", {"message": "Model metadata for `gpt-5` not found."}),
])
def test_warnings_become_warning_notices_with_their_text(method: str,
                                                         params: dict[str, Any]) -> None:
    session = running()
    text = params.get("message") or params["summary"]
    assert session.feed(notification(method, params)) == ([], [Notice("warning", text)])
    assert not session.finished


@pytest.mark.parametrize("method, params", [
    ("remoteControl/status/changed", {"status": "disabled"}),
    ("thread/started", {"thread": {"id": THREAD_ID}}),
    ("thread/settings/updated", {"threadId": THREAD_ID, "settings": {}}),
    ("thread/status/changed", {"threadId": THREAD_ID, "status": {"type": "active"}}),
    ("item/started", {**ids(), "item": {"type": "agentMessage", "id": "msg_1", "text": ""}}),
])
def test_other_notifications_only_become_notices(method: str, params: dict[str, Any]) -> None:
    session = running()
    assert session.feed(notification(method, params)) == ([], [Notice(method, "")])
    assert not session.finished


def test_the_plan_s_limits_are_passed_on_as_codex_reported_them() -> None:
    session = running()
    limits = {"limitId": "codex", "primary": {"usedPercent": 43, "windowDurationMins": 300,
                                              "resetsAt": 1795630186}}
    assert session.feed(notification("account/rateLimits/updated", {"rateLimits": limits})
                        ) == ([], [PlanLimitsUpdated(limits)])
    assert not session.finished


def test_a_turn_a_usage_limit_stopped_fails_as_a_usage_limit() -> None:
    session = running()
    message = "You\u2019ve hit your usage limit. Try again at 6:21 PM."
    error = {"message": message, "codexErrorInfo": "usageLimitExceeded"}
    session.feed(notification("error", {"error": error, "willRetry": False}))
    _, events = session.feed(notification("turn/completed", {"turn": {
        "id": TURN_ID, "status": "failed", "error": error}}))
    assert events == [TurnFailed(message, "usage_limit")]


def test_a_child_that_exits_after_a_usage_limit_fails_as_a_usage_limit() -> None:
    # Its last error's codexErrorInfo says so, though the proxy's words come first.
    session = running()
    error = {"message": "You\u2019ve hit your usage limit.", "codexErrorInfo":
             "usageLimitExceeded"}
    session.feed(notification("error", {"error": error, "willRetry": False}))
    [failed] = session.finish(1, "")
    assert failed.kind == "usage_limit"
    assert failed.message.endswith(": You\u2019ve hit your usage limit.")


def test_usage_comes_from_the_total() -> None:
    session = running()
    events = feed_all(session, [token_usage(TOTAL, LAST), turn_completed("completed")])
    assert events == [TurnCompleted(Usage(input_tokens=10, cached_input_tokens=2,
                                          output_tokens=5, reasoning_output_tokens=1))]


def test_the_latest_usage_update_wins() -> None:
    session = running()
    later = {**TOTAL, "inputTokens": 30, "outputTokens": 9}
    events = feed_all(session, [token_usage(TOTAL), token_usage(later),
                                turn_completed("completed")])
    assert events == [TurnCompleted(Usage(30, 2, 9, 1))]


def test_completed_without_usage() -> None:
    session = running()
    assert feed_all(session, [turn_completed("completed")]) == [TurnCompleted(None)]
    assert session.finished


# -- how a turn ends ---------------------------------------------------------------------------


def test_failed_turn_carries_codex_message() -> None:
    session = running()
    events = feed_all(session, [turn_completed("failed", {"message": UPSTREAM_ERROR})])
    assert events == [TurnFailed(UPSTREAM_ERROR, "codex")]
    assert session.finished


def test_failed_turn_without_its_own_error_uses_the_last_error() -> None:
    session = running()
    events = feed_all(session, [error_notification(UPSTREAM_ERROR, will_retry=False),
                                turn_completed("failed")])
    assert events == [Notice("error", UPSTREAM_ERROR), TurnFailed(UPSTREAM_ERROR, "codex")]


def test_failed_turn_with_an_auth_message_is_an_auth_failure() -> None:
    session = running()
    (event,) = feed_all(session, [turn_completed(
        "failed", {"message": "unexpected status 401 Unauthorized: token expired"})])
    assert isinstance(event, TurnFailed)
    assert event.kind == "auth"
    assert event.message.startswith(LOGIN_HINT)


def test_interrupted_turn_is_a_failure() -> None:
    session = running()
    (event,) = feed_all(session, [turn_completed("interrupted")])
    assert isinstance(event, TurnFailed)
    assert "interrupted" in event.message
    assert session.finished


def test_unknown_status_is_a_failure_naming_it() -> None:
    session = running()
    (event,) = feed_all(session, [turn_completed("exploded")])
    assert isinstance(event, TurnFailed)
    assert "exploded" in event.message


def test_a_second_turn_completed_says_nothing() -> None:
    session = running()
    assert feed_all(session, [turn_completed("completed")]) == [TurnCompleted(None)]
    assert feed_all(session, [turn_completed("failed", {"message": "late"})]) == []


def test_retrying_error_is_a_retry_notice_only() -> None:
    session = running()
    message = "Reconnecting... 1/5 (stream disconnected before completion)"
    events = feed_all(session, [error_notification(message, will_retry=True),
                                turn_completed("failed")])
    assert events[0] == Notice("retry", message)
    # A retry notice is not the failure: it must not become the turn's error message.
    assert isinstance(events[1], TurnFailed)
    assert message not in events[1].message


def test_final_error_notification_is_an_error_notice_not_yet_the_end() -> None:
    session = running()
    assert feed_all(session, [error_notification(UPSTREAM_ERROR, will_retry=False)]) == [
        Notice("error", UPSTREAM_ERROR)]
    assert not session.finished


def test_error_response_to_thread_resume_is_a_failure_naming_the_method() -> None:
    session = AppServerSession(plan())
    session.start()
    outgoing, _ = session.feed(response(1, {}))
    thread_resume = outgoing[1]
    outgoing, events = session.feed(line({"id": thread_resume["id"], "error": {
        "code": -32600, "message": "invalid cwd: /nope"}}))
    assert outgoing == []
    (event,) = events
    assert isinstance(event, TurnFailed)
    assert "thread/resume" in event.message
    # Codex's reason can quote its config (paths, secrets): the log has it, the client not.
    assert "/nope" not in event.message
    assert "invalid cwd: /nope" in event.detail
    assert session.finished
    assert session.finish(1, "") == []


def test_error_response_to_initialize_is_a_failure() -> None:
    session = AppServerSession(plan())
    session.start()
    outgoing, events = session.feed(line({"id": 1, "error": {"code": -32603,
                                                             "message": "no"}}))
    assert outgoing == []
    assert len(events) == 1
    assert isinstance(events[0], TurnFailed)
    assert "initialize" in events[0].message


def test_thread_start_result_without_a_thread_is_a_failure() -> None:
    session = AppServerSession(plan())
    session.start()
    session.feed(response(1, {}))
    outgoing, events = session.feed(response(2, {"thread": {}}))
    assert outgoing == []
    assert len(events) == 1
    assert isinstance(events[0], TurnFailed)
    assert session.finished


def test_error_response_to_turn_interrupt_is_only_a_notice() -> None:
    session = running()
    (interrupt,) = session.interrupt()
    outgoing, events = session.feed(line({"id": interrupt["id"], "error": {
        "code": -32600, "message": "no active turn"}}))
    assert outgoing == []
    assert len(events) == 1
    assert isinstance(events[0], Notice)
    assert events[0].kind == "interrupt"
    assert not session.finished


# -- the server's own requests and the rollout file -----------------------------------------


def test_a_tool_call_request_is_left_unanswered_and_starts_the_rollout_reading() -> None:
    session = running(tools=[WEATHER])
    assert not session.reading_rollout
    assert session.feed(tool_call(0, {"city": "Paris"})) == ([], [])
    assert session.reading_rollout
    assert not session.finished


@pytest.mark.parametrize("arguments", [
    '{"city": "Paris"}',
    '{\n  "city": "Paris",\n  "units": "metric"\n}',
    '{"q": "naïve café ☕ 日本語 \\u00e9 \U0001f600", "esc": "a\\"b\\\\c\\nd"}',
    '{"b": 1, "a": 2, "n": 1.50, "big": 100000000000000000000}',
    "{}",
    "",
])
def test_a_call_in_the_rollout_is_a_tool_call_with_the_models_own_text(arguments: str) -> None:
    session = running(tools=[WEATHER])
    session.feed(tool_call(0, {"city": "Paris"}))
    events = session.feed_rollout(rollout_item(function_call("call_1", "get_weather",
                                                             arguments)))
    assert events == [ToolCallRequested("call_1", "get_weather", arguments)]
    assert events[0].arguments == arguments  # the exact text, not re-encoded
    assert not session.finished


def test_the_usage_record_after_the_calls_ends_the_response_with_its_usage() -> None:
    session = running(tools=[WEATHER, DynamicTool("noop", "", {"type": "object"})])
    feed_all(session, [tool_call(0, {"c": 1}, call_id="call_b"),
                       tool_call(1, {}, call_id="call_a", tool="noop")])
    events: list[Any] = []
    for record in [rollout_item(function_call("call_a", "noop", "{}")),
                   rollout_item(function_call("call_b", "get_weather", '{"c": 1}')),
                   rollout_usage(RESPONSE_USAGE)]:
        events += session.feed_rollout(record)
    # In the model's order (the rollout's), whatever order the requests came in.
    assert events == [ToolCallRequested("call_a", "noop", "{}"),
                      ToolCallRequested("call_b", "get_weather", '{"c": 1}'),
                      ResponseCompleted(RESPONSE_USAGE_COUNTED)]
    # The turn itself goes on (Codex waits for the tool results): the driver stops it.
    assert not session.finished
    (interrupt,) = session.interrupt()
    assert interrupt["method"] == "turn/interrupt"


@pytest.mark.parametrize("record", [
    rollout_item({"type": "message", "id": "msg_1", "role": "assistant", "content": [
        {"type": "output_text", "text": "Let me check.", "annotations": []}]}),
    rollout_item({"type": "reasoning", "id": "rs_1", "summary": [
        {"type": "summary_text", "text": "Hmm."}], "content": None}),
    rollout_item(function_call("call_x", "exec_command", '{"cmd": "ls"}')),  # Codex's own
    rollout_item(function_call("call_x", "get_weather_v2", '{"city": "Paris"}')),
    rollout_item(function_call("call_x", "GET_WEATHER", '{"city": "Paris"}')),
    rollout_item({"type": "function_call_output", "call_id": "call_x", "output": "sunny"}),
    rollout_item(None),
    json.dumps({"timestamp": "x", "type": "event_msg", "payload": {"type": "token_count"}}),
    '{"timestamp": "x", "type": "response_item", "payl',  # still being written
    "[1, 2]",
    rollout_usage(RESPONSE_USAGE),  # no call handed over yet: not the end of anything
])
def test_other_rollout_lines_say_nothing(record: str) -> None:
    session = running(tools=[WEATHER])
    session.feed(tool_call(0, {"city": "Paris"}))
    assert session.feed_rollout(record) == []
    assert not session.finished


def test_a_call_id_in_the_rollout_twice_is_handed_over_once() -> None:
    session = running(tools=[WEATHER])
    session.feed(tool_call(0, {"city": "Paris"}))
    events: list[Any] = []
    for record in [rollout_item(function_call("call_1", "get_weather", '{"city": "Paris"}')),
                   rollout_item(function_call("call_1", "get_weather", '{"city": "Lyon"}'))]:
        events += session.feed_rollout(record)
    assert events == [ToolCallRequested("call_1", "get_weather", '{"city": "Paris"}')]


def test_an_overdue_rollout_hands_over_the_calls_as_requested() -> None:
    session = running(tools=[WEATHER])
    arguments = {"city": "Paris", "n": [1, {"x": "é"}]}
    feed_all(session, [tool_call(0, arguments), token_usage(TOTAL)])
    events = session.rollout_overdue()
    assert events == [
        ToolCallRequested("call_1", "get_weather", '{"city":"Paris","n":[1,{"x":"é"}]}'),
        ResponseCompleted(Usage(input_tokens=10, cached_input_tokens=2, output_tokens=5,
                                reasoning_output_tokens=1)),
    ]
    assert json.loads(events[0].arguments) == arguments
    assert ToolCallRequested not in map(type, session.rollout_overdue())  # each call once


def test_an_overdue_rollout_without_arguments_gives_an_empty_object() -> None:
    session = running(tools=[WEATHER])
    session.feed(line({"method": "item/tool/call", "id": 0, "params": {
        **ids(), "callId": "call_9", "namespace": None, "tool": "get_weather"}}))
    assert session.rollout_overdue()[0] == ToolCallRequested("call_9", "get_weather", "{}")


def test_nothing_is_overdue_without_a_tool_call() -> None:
    session = running(tools=[WEATHER])
    assert session.rollout_overdue() == []
    assert not session.reading_rollout


def test_server_request_colliding_with_a_pending_id_is_a_request() -> None:
    session = AppServerSession(plan(tools=[WEATHER]))
    session.start()
    session.feed(response(1, {}))
    session.feed(response(2, thread_result()))
    # turn/start (id 3) is pending; the server's own request 3 must not be taken for its answer.
    assert session.turn_id is None
    assert session.feed(tool_call(3, {"city": "Paris"})) == ([], [])
    assert session.turn_id is None
    assert session.reading_rollout
    assert not session.finished
    # The real answer to turn/start still lands.
    assert session.feed(response(3, turn_result())) == ([], [])
    assert session.turn_id == TURN_ID


def test_colliding_server_request_does_not_take_the_thread_resume_answer() -> None:
    session = AppServerSession(plan())
    session.start()
    outgoing, _ = session.feed(response(1, {}))
    pending = outgoing[1]["id"]
    outgoing, events = session.feed(line({"method": "item/tool/call", "id": pending,
                                          "params": {"callId": "c", "tool": "t",
                                                     "arguments": {}}}))
    assert (outgoing, events) == ([], [])
    assert session.thread_id is None
    outgoing, events = session.feed(response(pending, thread_result()))
    assert [m["method"] for m in outgoing] == ["turn/start"]
    assert events == []


def test_unknown_server_request_gets_method_not_found_with_its_id() -> None:
    session = running()
    outgoing, events = session.feed(line({
        "method": "item/commandExecution/requestApproval", "id": 0,
        "params": {**ids(), "itemId": "c_1", "command": "rm -rf /"}}))
    assert outgoing == [{"id": 0, "error": {
        "code": METHOD_NOT_FOUND,
        "message": "item/commandExecution/requestApproval is not supported"}}]
    assert METHOD_NOT_FOUND == -32601
    assert "method" not in outgoing[0]
    assert "result" not in outgoing[0]
    assert events == [Notice("server_request", "item/commandExecution/requestApproval")]
    assert not session.finished


@pytest.mark.parametrize("request_id", [3, "srv-3"])
def test_unknown_server_request_reply_keeps_its_id_even_when_colliding(
    request_id: int | str,
) -> None:
    session = AppServerSession(plan())
    session.start()
    session.feed(response(1, {}))
    session.feed(response(2, thread_result()))
    outgoing, _ = session.feed(line({"method": "mcpServer/elicitation/request",
                                     "id": request_id, "params": {}}))
    assert len(outgoing) == 1
    assert outgoing[0]["id"] == request_id
    assert outgoing[0]["error"]["code"] == -32601
    # Our own pending turn/start (id 3) is untouched.
    session.feed(response(3, turn_result()))
    assert session.turn_id == TURN_ID


# -- garbage -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    "not json at all\n",
    "{\"id\": 1, \n",
    "[1, 2, 3]\n",
    "\"a string\"\n",
    "42\n",
    "null\n",
    "{\"result\": {}}\n",
    "{}\n",
])
def test_garbage_lines_are_garbage_notices(raw: str) -> None:
    session = running()
    outgoing, events = session.feed(raw)
    assert outgoing == []
    assert events == [Notice("garbage", raw.strip())]
    assert not session.finished


def test_garbage_detail_is_bounded() -> None:
    session = running()
    _, (event,) = session.feed("x" * 5000 + "\n")
    assert event.kind == "garbage"
    assert 0 < len(event.detail) <= 300


@pytest.mark.parametrize("raw", ["", "\n", "   \r\n", "\t"])
def test_blank_lines_say_nothing(raw: str) -> None:
    session = running()
    assert session.feed(raw) == ([], [])


# -- the process ending ------------------------------------------------------------------------


def test_finish_before_the_turn_ends_is_a_failure_with_status_and_logged_stderr() -> None:
    session = running()
    (event,) = session.finish(137, "some log line\nthread panicked: out of cheese\n")
    assert isinstance(event, TurnFailed)
    assert "137" in event.message
    assert "panicked" not in event.message
    assert "thread panicked: out of cheese" in event.detail
    assert session.finished
    assert session.finish(137, "again") == []


def test_finish_prefers_the_last_error() -> None:
    session = running()
    feed_all(session, [error_notification(UPSTREAM_ERROR, will_retry=False)])
    (event,) = session.finish(1, "unrelated stderr")
    assert isinstance(event, TurnFailed)
    assert "status 1" in event.message
    assert UPSTREAM_ERROR in event.message
    assert "unrelated stderr" not in event.message


def test_finish_sends_the_stderr_tail_to_the_log_only() -> None:
    session = running()
    (event,) = session.finish(2, "Error: TAIL-MARKER")
    assert isinstance(event, TurnFailed)
    assert "TAIL-MARKER" not in event.message and "proxy's log" in event.message
    assert "TAIL-MARKER" in event.detail


def test_finish_without_any_detail() -> None:
    session = AppServerSession(plan())
    session.start()
    (event,) = session.finish(0, "   \n")
    assert isinstance(event, TurnFailed)
    assert "exited with status 0" in event.message
    assert session.finished


@pytest.mark.parametrize("ending", [turn_completed("completed"),
                                    turn_completed("failed", {"message": "boom"})])
def test_finish_after_the_turn_ended_says_nothing(ending: str) -> None:
    session = running()
    feed_all(session, [ending])
    assert session.finish(0, "bye") == []
    assert session.finish(1, "error: crashed") == []


# -- interrupting ------------------------------------------------------------------------------


def test_interrupt_while_the_turn_runs() -> None:
    session = running()
    (message,) = session.interrupt()
    assert message == {"id": 4, "method": "turn/interrupt",
                       "params": {"threadId": THREAD_ID, "turnId": TURN_ID}}
    # Its answer is quiet, and the turn then ends as interrupted.
    assert session.feed(response(4, {})) == ([], [])
    (event,) = feed_all(session, [turn_completed("interrupted")])
    assert isinstance(event, TurnFailed)
    assert session.interrupt() == []


def test_interrupt_before_anything_is_known_sends_nothing() -> None:
    session = AppServerSession(plan())
    assert session.interrupt() == []
    session.start()
    assert session.interrupt() == []
    session.feed(response(1, {}))
    assert session.interrupt() == []
    session.feed(response(2, thread_result()))
    assert session.thread_id == THREAD_ID
    assert session.interrupt() == []  # the turn id is not known yet


def test_interrupt_does_not_consume_an_id_when_it_sends_nothing() -> None:
    session = AppServerSession(plan())
    session.start()
    session.interrupt()
    outgoing, _ = session.feed(response(1, {}))
    assert outgoing[1]["id"] == 2


@pytest.mark.parametrize("ending", [
    lambda s: s.feed(turn_completed("completed")),
    lambda s: s.feed(turn_completed("failed", {"message": "x"})),
    lambda s: s.finish(1, "gone"),
])
def test_interrupt_after_the_turn_ended_sends_nothing(ending: Any) -> None:
    session = running()
    ending(session)
    assert session.finished
    assert session.interrupt() == []


# -- encoding ----------------------------------------------------------------------------------


def test_encode_is_one_compact_line() -> None:
    message = {"id": 3, "method": "turn/start", "params": {
        "threadId": THREAD_ID,
        "input": [{"type": "text", "text": "Ça va?\nOui ☕ \u2028", "text_elements": []}]}}
    data = encode(message)
    assert isinstance(data, bytes)
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    assert b": " not in data
    assert b", " not in data
    assert "Ça va?".encode() in data  # not \u-escaped
    assert json.loads(data.decode("utf-8")) == message


def test_encode_of_what_the_session_writes() -> None:
    session = AppServerSession(plan(thread_id="héllo\nworld", output_schema={"é": "\n"}))
    for message in handshake(session):
        data = encode(message)
        assert data.count(b"\n") == 1
        assert data.endswith(b"\n")
        assert json.loads(data) == message
        assert data == json.dumps(message, ensure_ascii=False,
                                  separators=(",", ":")).encode() + b"\n"


# -- a whole run -------------------------------------------------------------------------------


def test_a_realistic_transcript() -> None:
    session = AppServerSession(plan(model="gpt-5.4", effort="low",
                                    tools=[DynamicTool("get_weather", "Weather.",
                                                       {"type": "object"})]))
    written = session.start()
    events: list[Any] = []

    def serve(raw: str) -> None:
        outgoing, new = session.feed(raw)
        written.extend(outgoing)
        events.extend(new)

    serve(notification("configWarning", {"summary": "unknown config key", "details": None}))
    serve(response(1, {"userAgent": "codex-openai-proxy/0.169.0", "codexHome": "/tmp/h",
                       "platformFamily": "unix", "platformOs": "linux"}))
    serve(notification("remoteControl/status/changed", {"status": "disabled"}))
    serve(response(2, thread_result()))
    serve(notification("thread/settings/updated", {"threadId": THREAD_ID}))
    serve(notification("thread/status/changed", {"threadId": THREAD_ID,
                                                  "status": {"type": "active"}}))
    serve(notification("turn/started", {"threadId": THREAD_ID,
                                        "turn": {"id": TURN_ID, "status": "inProgress"}}))
    serve(response(3, turn_result()))
    serve(notification("account/rateLimits/updated", {"rateLimits": {}}))
    serve(notification("item/started", {**ids(), "item": {"type": "reasoning", "id": "rs_1"}}))
    serve(reasoning_delta("rs_1", "Thinking", 0))
    serve(reasoning_delta("rs_1", " it over.", 0))
    serve(item_completed({"type": "reasoning", "id": "rs_1", "summary": ["Thinking it over."],
                          "content": []}))
    serve(error_notification("Reconnecting... 1/5", will_retry=True))
    serve(notification("warning", {"message": "heads up"}))
    serve(notification("item/started", {**ids(), "item": {"type": "agentMessage",
                                                          "id": "msg_1", "text": ""}}))
    serve(message_delta("msg_1", "Hello"))
    serve(message_delta("msg_1", " from the mock."))
    serve(item_completed({"type": "agentMessage", "id": "msg_1",
                          "text": "Hello from the mock."}))
    serve(token_usage(TOTAL, LAST))
    serve("\n")
    serve(turn_completed("completed"))
    serve(notification("thread/status/changed", {"threadId": THREAD_ID,
                                                  "status": {"type": "idle"}}))

    assert [(m.get("id"), m["method"]) for m in written] == [
        (1, "initialize"), (None, "initialized"), (2, "thread/resume"), (3, "turn/start")]
    assert written[2]["params"]["model"] == "gpt-5.4"
    assert written[3]["params"]["effort"] == "low"
    assert events == [
        Notice("warning", "unknown config key"),
        Notice("remoteControl/status/changed", ""),
        Notice("thread/settings/updated", ""),
        Notice("thread/status/changed", ""),
        PlanLimitsUpdated({}),
        Notice("item/started", ""),
        ReasoningDelta("rs_1#0", "Thinking"),
        ReasoningDelta("rs_1#0", " it over."),
        ReasoningDone("rs_1#0", "Thinking it over."),
        Notice("retry", "Reconnecting... 1/5"),
        Notice("warning", "heads up"),
        Notice("item/started", ""),
        MessageDelta("msg_1", "Hello"),
        MessageDelta("msg_1", " from the mock."),
        MessageDone("msg_1", "Hello from the mock."),
        TurnCompleted(Usage(input_tokens=10, cached_input_tokens=2, output_tokens=5,
                            reasoning_output_tokens=1)),
        Notice("thread/status/changed", ""),
    ]
    assert session.finished
    assert session.finish(0, "") == []
    assert session.interrupt() == []


def test_a_realistic_failing_transcript() -> None:
    session = running()
    events = feed_all(session, [
        error_notification("Reconnecting... 1/5 (" + UPSTREAM_ERROR + ")", will_retry=True),
        error_notification(UPSTREAM_ERROR, will_retry=False),
        turn_completed("failed", {"message": UPSTREAM_ERROR, "codexErrorInfo": None}),
    ])
    assert events == [
        Notice("retry", "Reconnecting... 1/5 (" + UPSTREAM_ERROR + ")"),
        Notice("error", UPSTREAM_ERROR),
        TurnFailed(UPSTREAM_ERROR, "codex"),
    ]


def test_a_realistic_tool_call_transcript() -> None:
    # What codex-cli 0.169.0 does on a resumed thread: the calls come as requests (in any
    # order, with the arguments parsed), the rollout file has the model's items, then the end
    # of the response. The requests are left unanswered.
    session = running(tools=[WEATHER])
    feed_all(session, [
        notification("item/started", {**ids(), "item": {"type": "dynamicToolCall",
                                                         "id": "call_2"}}),
        tool_call(0, {"city": "Tokyo", "units": "C"}, call_id="call_2"),
        tool_call(1, {"city": "Paris"}, call_id="call_1"),
    ])
    events: list[Any] = []
    for record in [
        json.dumps({"timestamp": "x", "type": "turn_context", "payload": {"cwd": "/tmp"}}),
        rollout_item(function_call("call_1", "get_weather", '{"city": "Paris"}')),
        rollout_item(function_call("call_2", "get_weather", '{"city": "Tokyo", "units": "C"}')),
        rollout_usage(RESPONSE_USAGE),
        json.dumps({"timestamp": "x", "type": "event_msg", "payload": {"type": "token_count"}}),
    ]:
        events += session.feed_rollout(record)
    assert events == [
        ToolCallRequested("call_1", "get_weather", '{"city": "Paris"}'),
        ToolCallRequested("call_2", "get_weather", '{"city": "Tokyo", "units": "C"}'),
        ResponseCompleted(RESPONSE_USAGE_COUNTED),
    ]
    assert not session.finished
    # The driver stops the turn once the calls are handed over.
    (interrupt,) = session.interrupt()
    assert interrupt["method"] == "turn/interrupt"


@pytest.mark.parametrize("line", [
    '{"method":"item/agentMessage/delta","params":[1]}',
    '{"method":"item/tool/call","id":0,"params":"x"}',
    '{"id":[1],"result":{}}',
])
def test_json_of_the_wrong_shape_is_garbage_not_a_crash(line):
    session = AppServerSession(TurnPlan(thread_id=THREAD_ID, cwd="/tmp"))
    session.start()
    outgoing, events = session.feed(line)
    assert outgoing == []
    assert [type(event).__name__ for event in events] == ["Notice"]
    assert events[0].kind == "garbage"


def test_a_turn_that_is_not_an_object_still_ends_the_turn():
    session = AppServerSession(TurnPlan(thread_id=THREAD_ID, cwd="/tmp"))
    _, events = session.feed('{"method":"turn/completed","params":{"turn":"x"}}')
    assert session.finished
    assert len(events) == 1 and "status" in events[0].message


# -- phases ------------------------------------------------------------------------------------


def test_the_phases_of_a_turn_that_completes() -> None:
    session = AppServerSession(plan())
    assert (session.phase, session.awaiting) == (Phase.IDLE, None)
    session.start()
    assert (session.phase, session.awaiting) == (Phase.INITIALIZING, "initialize")
    session.feed(response(1, {}))
    assert (session.phase, session.awaiting) == (Phase.OPENING_THREAD, "thread/resume")
    session.feed(response(2, thread_result()))
    assert (session.phase, session.awaiting) == (Phase.STARTING_TURN, "turn/start")
    session.feed(response(3, turn_result()))
    assert (session.phase, session.awaiting) == (Phase.TURN_RUNNING, None)
    session.feed(turn_completed("completed"))
    assert (session.phase, session.awaiting, session.finished) == (Phase.ENDED, None, True)


def test_the_phases_of_an_interrupted_turn() -> None:
    session = running()
    session.interrupt()
    assert (session.phase, session.awaiting) == (Phase.INTERRUPTING, "turn/interrupt")
    assert session.interrupt() == []  # asked once
    session.feed(response(4, {}))
    assert session.phase is Phase.INTERRUPTING  # until the turn says it has ended
    session.feed(turn_completed("interrupted"))
    assert session.phase is Phase.ENDED


def test_every_phase_but_the_end_can_fail_and_the_end_is_final() -> None:
    for phase in Phase:
        assert ((phase, Step.FAILED) in TRANSITIONS) is (phase is not Phase.ENDED)
    assert not any(phase is Phase.ENDED for phase, _ in TRANSITIONS)


def test_starting_twice_is_a_misuse() -> None:
    session = AppServerSession(plan())
    session.start()
    with pytest.raises(ProtocolMisuse, match="start"):
        session.start()


def test_a_result_in_the_wrong_phase_moves_nothing() -> None:
    session = AppServerSession(plan())
    session.start()
    # A thread/resume result before thread/resume was asked (a confused child): ignored.
    outgoing, events = session.feed(response(2, thread_result()))
    assert (outgoing, events, session.phase) == ([], [], Phase.INITIALIZING)


@pytest.mark.parametrize(("answers", "awaited"), [
    (0, "initialize"), (1, "thread/resume"), (2, "turn/start")])
def test_giving_up_on_an_unanswered_step_fails_naming_it(answers: int, awaited: str) -> None:
    session = AppServerSession(plan())
    session.start()
    for reply in [response(1, {}), response(2, thread_result())][:answers]:
        session.feed(reply)
    [failed] = session.give_up(30)
    assert isinstance(failed, TurnFailed)
    assert failed.message == f"Codex app-server did not answer {awaited} within 30 s."
    assert session.finished
    assert session.give_up(30) == []


def test_nothing_to_give_up_on_while_the_turn_runs() -> None:
    session = running()
    assert session.awaiting is None
    assert session.give_up(30) == []
    assert not session.finished


def test_garbage_explains_an_exit_without_a_turn() -> None:
    session = running()
    feed_all(session, ["this is not json\n"])
    [failed] = session.finish(0, "")
    assert "not JSON" in failed.message and "this is not json" not in failed.message
    assert "this is not json" in failed.detail
