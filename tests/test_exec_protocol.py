"""Unit tests for exec_protocol.py: `codex exec` output lines into CodexEvents."""

from __future__ import annotations

import json
from typing import Any

import pytest

from codex_openai_proxy.codex_events import (
    LOGIN_HINT,
    MessageDone,
    Notice,
    ReasoningDone,
    TurnCompleted,
    TurnFailed,
    Usage,
    failure,
    parse_usage,
)
from codex_openai_proxy.exec_protocol import ExecJsonReader, PlainOutputReader


def line(event: dict[str, Any]) -> str:
    return json.dumps(event) + "\n"


def item(**fields: Any) -> str:
    return line({"type": "item.completed", "item": fields})


USAGE = {"input_tokens": 1200, "cached_input_tokens": 1000, "output_tokens": 80,
         "reasoning_output_tokens": 64}
TURN_COMPLETED = line({"type": "turn.completed", "usage": USAGE})


# -- a normal --json run -----------------------------------------------------------------------


def test_a_whole_run() -> None:
    reader = ExecJsonReader()
    events = []
    for raw in [
        line({"type": "thread.started", "thread_id": "t-1"}),
        line({"type": "turn.started"}),
        item(id="item_0", type="reasoning", text="**Thinking**"),
        item(id="item_1", type="agent_message", text="Hello!"),
        TURN_COMPLETED,
    ]:
        events += reader.feed(raw)
    events += reader.finish(0, "")
    assert events == [
        Notice("thread.started", ""),
        Notice("turn.started", ""),
        ReasoningDone("item_0", "**Thinking**"),
        MessageDone("item_1", "Hello!"),
        TurnCompleted(Usage(1200, 1000, 80, 64)),
    ]
    assert reader.finished


def test_agent_message_becomes_message_done() -> None:
    events = ExecJsonReader().feed(item(id="item_3", type="agent_message", text="Hi\nthere"))
    assert events == [MessageDone("item_3", "Hi\nthere")]


def test_reasoning_becomes_reasoning_done() -> None:
    assert ExecJsonReader().feed(item(id="r", type="reasoning", text="hmm")) == [
        ReasoningDone("r", "hmm")
    ]


def test_agent_message_without_text_or_id() -> None:
    assert ExecJsonReader().feed(item(type="agent_message")) == [MessageDone("", "")]


def test_line_without_newline_and_with_crlf() -> None:
    raw = json.dumps({"type": "item.completed",
                      "item": {"id": "a", "type": "agent_message", "text": "x"}})
    assert ExecJsonReader().feed(raw) == [MessageDone("a", "x")]
    assert ExecJsonReader().feed(raw + "\r\n") == [MessageDone("a", "x")]


@pytest.mark.parametrize("raw", ["", "\n", "   \n", "\r\n"])
def test_blank_lines_are_skipped(raw: str) -> None:
    reader = ExecJsonReader()
    assert reader.feed(raw) == []
    reader.feed(TURN_COMPLETED)
    assert reader.finish(0, "") == []  # a blank line is not garbage


def test_started_and_updated_items_are_only_notices() -> None:
    reader = ExecJsonReader()
    started = reader.feed(line({"type": "item.started",
                                "item": {"id": "i", "type": "agent_message", "text": "par"}}))
    updated = reader.feed(line({"type": "item.updated",
                                "item": {"id": "i", "type": "todo_list", "items": []}}))
    assert started == [Notice("item.started", "")]
    assert updated == [Notice("item.updated", "")]


def test_item_completed_without_an_item_object() -> None:
    reader = ExecJsonReader()
    assert reader.feed(line({"type": "item.completed"})) == []
    assert reader.feed(line({"type": "item.completed", "item": "x"})) == []


# -- operational items -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"type": "command_execution", "command": "bash -lc ls", "aggregated_output": "a\nb",
          "exit_code": 0, "status": "completed"},
         Notice("command_execution", "bash -lc ls")),
        ({"type": "file_change", "changes": [{"path": "a.py", "kind": "add"}],
          "status": "completed"},
         Notice("file_change", "")),
        ({"type": "mcp_tool_call", "server": "docs", "tool": "search", "status": "completed"},
         Notice("mcp_tool_call", "search")),
        ({"type": "web_search", "query": "trio nursery"},
         Notice("web_search", "trio nursery")),
        ({"type": "todo_list", "items": [{"text": "step", "completed": False}]},
         Notice("todo_list", "")),
        ({"type": "something_new", "message": "future item"},
         Notice("something_new", "future item")),
    ],
)
def test_operational_items_become_notices(fields: dict[str, Any], expected: Notice) -> None:
    assert ExecJsonReader().feed(item(id="item_9", **fields)) == [expected]


def test_long_operational_detail_is_cut() -> None:
    events = ExecJsonReader().feed(item(id="c", type="command_execution", command="x" * 1000))
    assert events == [Notice("command_execution", "x" * 200)]


def test_operational_items_never_become_content() -> None:
    reader = ExecJsonReader()
    events = []
    for fields in [
        {"type": "command_execution", "command": "cat secret", "aggregated_output": "SECRET"},
        {"type": "file_change", "changes": []},
        {"type": "web_search", "query": "q"},
    ]:
        events += reader.feed(item(id="i", **fields))
    assert all(isinstance(event, Notice) for event in events)
    assert not any("SECRET" in event.detail for event in events)  # type: ignore[union-attr]


# -- errors, retries and failures --------------------------------------------------------------


def test_error_item_is_a_warning_notice_and_the_turn_goes_on() -> None:
    reader = ExecJsonReader()
    assert reader.feed(item(id="e", type="error", message="config warning")) == [
        Notice("warning", "config warning")
    ]
    assert not reader.finished
    assert reader.feed(item(id="m", type="agent_message", text="ok")) == [MessageDone("m", "ok")]


def test_top_level_error_is_a_retry_notice() -> None:
    reader = ExecJsonReader()
    events = reader.feed(line({"type": "error", "message": "Reconnecting... 1/5"}))
    assert events == [Notice("retry", "Reconnecting... 1/5")]
    assert not reader.finished


def test_turn_completed_after_retries_is_a_success() -> None:
    reader = ExecJsonReader()
    reader.feed(line({"type": "error", "message": "Reconnecting... 1/5"}))
    reader.feed(item(id="m", type="agent_message", text="done"))
    assert reader.feed(TURN_COMPLETED) == [TurnCompleted(Usage(1200, 1000, 80, 64))]
    assert reader.finish(0, "") == []


def test_turn_failed_with_message() -> None:
    reader = ExecJsonReader()
    events = reader.feed(line({"type": "turn.failed",
                               "error": {"message": "model overloaded"}}))
    assert events == [TurnFailed("model overloaded", "codex")]
    assert reader.finished
    assert reader.finish(1, "boom") == []  # already reported


def test_turn_failed_without_message_uses_the_last_error() -> None:
    reader = ExecJsonReader()
    reader.feed(line({"type": "error", "message": "stream disconnected before completion"}))
    assert reader.feed(line({"type": "turn.failed", "error": {}})) == [
        TurnFailed("stream disconnected before completion", "codex")
    ]


@pytest.mark.parametrize("error", [None, {}, "x", {"message": ""}, {"message": None}])
def test_turn_failed_without_any_message(error: Any) -> None:
    event: dict[str, Any] = {"type": "turn.failed"}
    if error is not None:
        event["error"] = error
    assert ExecJsonReader().feed(line(event)) == [
        TurnFailed("Codex reported a failed turn.", "codex")
    ]


@pytest.mark.parametrize(
    "message",
    [
        "unexpected status 401 Unauthorized: Missing bearer",
        "You are not logged in",
        "Your access token has expired",
        "token expired",
        "Failed to refresh token: refresh token was already used",
        "Invalid API key provided",
        "Incorrect API key provided",
        "Login required",
        "please login first",
        "Please log in",
        "UNAUTHORISED",
    ],
)
def test_auth_looking_failures_get_the_login_hint(message: str) -> None:
    events = ExecJsonReader().feed(line({"type": "turn.failed", "error": {"message": message}}))
    assert len(events) == 1
    failed = events[0]
    assert isinstance(failed, TurnFailed)
    assert failed.kind == "auth"
    assert "codex login" in failed.message
    assert failed.message.startswith(LOGIN_HINT)
    assert message in failed.message


@pytest.mark.parametrize(
    "message",
    ["model overloaded", "status 4010 from upstream", "rate limit reached (429)",
     "context window exceeded"],
)
def test_other_failures_are_codex_failures(message: str) -> None:
    assert failure(message) == TurnFailed(message, "codex")


def test_failure_strips_and_fills_in_an_empty_message() -> None:
    assert failure("  boom \n") == TurnFailed("boom", "codex")
    assert failure("   ") == TurnFailed("Codex failed without a message.", "codex")


def test_auth_retry_error_then_exit_is_an_auth_failure() -> None:
    reader = ExecJsonReader()
    reader.feed(line({"type": "error", "message": "unexpected status 401 Unauthorized"}))
    [failed] = reader.finish(1, "")
    assert isinstance(failed, TurnFailed)
    assert failed.kind == "auth"
    assert "codex login" in failed.message


# -- garbage and a run that ends without turn.completed ----------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["not json at all\n", "{broken\n", "42\n", '"text"\n', "[1, 2]\n", "null\n",
     '{"no_type": 1}\n', '{"type": 5}\n'],
)
def test_garbage_is_a_notice_then_a_failure_at_finish(raw: str) -> None:
    reader = ExecJsonReader()
    assert reader.feed(raw) == [Notice("garbage", raw.strip())]
    assert not reader.finished
    [failed] = reader.finish(0, "")
    assert isinstance(failed, TurnFailed)
    assert failed.kind == "codex"
    assert "not JSON" in failed.message
    # Raw output is the log's, not the client's.
    assert repr(raw.strip()) not in failed.message
    assert repr(raw.strip()) in failed.detail


def test_garbage_does_not_stop_the_answer() -> None:
    reader = ExecJsonReader()
    assert reader.feed("warning: something odd\n") == [Notice("garbage", "warning: something odd")]
    assert reader.feed(item(id="m", type="agent_message", text="answer")) == [
        MessageDone("m", "answer")
    ]
    assert reader.feed(TURN_COMPLETED) == [TurnCompleted(Usage(1200, 1000, 80, 64))]
    assert reader.finish(0, "") == []


def test_the_log_gets_the_first_garbage_line_cut_to_300_characters() -> None:
    reader = ExecJsonReader()
    reader.feed("A" * 1000 + "\n")
    reader.feed("second garbage\n")
    [failed] = reader.finish(0, "")
    assert isinstance(failed, TurnFailed)
    assert repr("A" * 300) in failed.detail
    assert "second garbage" not in failed.detail


def test_garbage_notice_is_cut_to_300_characters() -> None:
    assert ExecJsonReader().feed("B" * 500) == [Notice("garbage", "B" * 300)]


def test_garbage_explanation_beats_last_error_and_stderr() -> None:
    reader = ExecJsonReader()
    reader.feed(line({"type": "error", "message": "Reconnecting... 5/5"}))
    reader.feed("oops\n")
    [failed] = reader.finish(2, "stderr says")
    assert isinstance(failed, TurnFailed)
    assert failed.message == "Codex printed output that is not JSON; the proxy's log has it."
    assert "'oops'" in failed.detail and "stderr says" in failed.detail


def test_last_error_explains_an_unfinished_turn() -> None:
    reader = ExecJsonReader()
    reader.feed(line({"type": "error", "message": "Reconnecting... 1/5"}))
    reader.feed(line({"type": "error", "message": "stream error: connection reset"}))
    assert reader.finish(1, "stderr text") == [
        TurnFailed("stream error: connection reset", "codex")
    ]


def test_exit_with_status_sends_stderr_to_the_log_only() -> None:
    reader = ExecJsonReader()
    reader.feed(item(id="m", type="agent_message", text="partial"))
    [failed] = reader.finish(3, "  Error: config.toml is invalid\n")
    assert failed == TurnFailed("Codex exited with status 3 before finishing the turn; its "
                                "error output is in the proxy's log.", "codex")
    assert "Error: config.toml is invalid" in failed.detail


def test_exit_with_status_without_stderr() -> None:
    assert ExecJsonReader().finish(137, "") == [
        TurnFailed("Codex exited with status 137 before finishing the turn.")]


def test_exit_zero_without_turn_completed_is_a_failure() -> None:
    assert ExecJsonReader().finish(0, "") == [
        TurnFailed("Codex exited without finishing the turn.")
    ]
    assert ExecJsonReader().finish(0, "bye\n") == [
        TurnFailed("Codex exited without finishing the turn; its error output is in the "
                   "proxy's log.")
    ]


def test_killed_process_with_unknown_status() -> None:
    assert ExecJsonReader().finish(None, "") == [
        TurnFailed("Codex exited with status None before finishing the turn.")]


def test_stderr_that_looks_like_auth_is_an_auth_failure() -> None:
    [failed] = ExecJsonReader().finish(1, "Error: Not logged in. Run codex login.")
    assert isinstance(failed, TurnFailed)
    assert failed.kind == "auth"
    assert failed.message.startswith(LOGIN_HINT)
    assert "status 1" in failed.message


def test_finish_twice_reports_once() -> None:
    reader = ExecJsonReader()
    assert len(reader.finish(1, "")) == 1
    assert reader.finish(1, "") == []


def test_lines_after_the_turn_ended_are_ignored() -> None:
    reader = ExecJsonReader()
    reader.feed(TURN_COMPLETED)
    assert reader.feed(item(id="late", type="agent_message", text="late")) == []
    assert reader.feed("garbage after the end\n") == []
    assert reader.finish(0, "") == []


# -- usage -------------------------------------------------------------------------------------


def test_turn_completed_without_usage() -> None:
    assert ExecJsonReader().feed(line({"type": "turn.completed"})) == [TurnCompleted(None)]


def test_parse_usage_in_both_spellings() -> None:
    # exec spells the counts in snake case, app-server in camel case: one parser reads both.
    assert parse_usage(USAGE) == Usage(1200, 1000, 80, 64)
    assert parse_usage({"inputTokens": 1200, "cachedInputTokens": 1000, "outputTokens": 80,
                        "reasoningOutputTokens": 64, "totalTokens": 1280}) == Usage(
        1200, 1000, 80, 64)
    assert parse_usage({"input_tokens": 5}) == Usage(input_tokens=5)
    assert parse_usage(None) is None
    assert parse_usage([1, 2]) is None


@pytest.mark.parametrize("bad", [None, -3, "12", 1.5, True, [1]])
def test_usage_counts_that_are_not_counts_become_zero(bad: Any) -> None:
    raw = {"input_tokens": bad, "cached_input_tokens": bad, "output_tokens": bad,
           "reasoning_output_tokens": bad}
    assert parse_usage(raw) == Usage(0, 0, 0, 0)


# -- plain output (builds without --json) ------------------------------------------------------


def plain(lines: list[str], returncode: int | None = 0, stderr: str = "") -> list[Any]:
    reader = PlainOutputReader()
    for raw in lines:
        assert reader.feed(raw) == []  # nothing is known until the end
    return reader.finish(returncode, stderr)


def test_plain_output_is_the_message() -> None:
    assert plain(["Hello\n", "\n", "World\n"]) == [
        MessageDone("plain", "Hello\n\nWorld"), TurnCompleted(None)
    ]


def test_plain_output_strips_surrounding_blank_lines_and_crlf() -> None:
    assert plain(["\n", "Answer\r\n", "\n", "\n"]) == [
        MessageDone("plain", "Answer"), TurnCompleted(None)
    ]


def test_plain_output_keeps_indentation() -> None:
    assert plain(["def f():\n", "    return 1\n"])[0] == MessageDone(
        "plain", "def f():\n    return 1"
    )


def test_plain_output_of_an_old_build_keeps_only_the_answer() -> None:
    stdout = [
        "[2025-01-01T10:00:00] OpenAI Codex v0.20.0 (research preview)\n",
        "--------\n",
        "workdir: /tmp/x\n",
        "model: gpt-5\n",
        "provider: openai\n",
        "approval: never\n",
        "sandbox: read-only\n",
        "reasoning effort: high\n",
        "reasoning summaries: auto\n",
        "--------\n",
        "[2025-01-01T10:00:01] User instructions:\n",
        "hi\n",
        "[2025-01-01T10:00:02] thinking\n",
        "Considering things\n",
        "[2025-01-01T10:00:03] exec ls in /tmp/x\n",
        "file.txt\n",
        "[2025-01-01T10:00:04] codex\n",
        "The answer is 42.\n",
        "[2025-01-01T10:00:05] tokens used: 1234\n",
    ]
    assert plain(stdout) == [MessageDone("plain", "The answer is 42."), TurnCompleted(None)]


def test_plain_output_uses_the_last_answer_header() -> None:
    stdout = [
        "[2025-01-01T10:00:00] codex\n", "first draft\n",
        "[2025-01-01T10:00:09] codex\n", "final answer\n",
    ]
    assert plain(stdout)[0] == MessageDone("plain", "final answer")


def test_plain_output_failure_uses_exit_status_and_logs_stderr() -> None:
    [failed] = plain(["partial\n"], 2, "Error: boom\n")
    assert failed == TurnFailed("Codex exited with status 2 before finishing the turn; its "
                                "error output is in the proxy's log.", "codex")
    assert "Error: boom" in failed.detail
    assert plain([], None, "") == [
        TurnFailed("Codex exited with status None before finishing the turn.")]


def test_plain_output_auth_failure() -> None:
    [failed] = plain([], 1, "401 Unauthorized")
    assert isinstance(failed, TurnFailed)
    assert failed.kind == "auth"


def test_plain_empty_output_is_an_empty_message() -> None:
    assert plain([]) == [MessageDone("plain", ""), TurnCompleted(None)]


@pytest.mark.parametrize(
    "raw",
    [
        "[2025-06-01T12:00:00] exec bash -lc 'ls' in /tmp/x",
        "[2025-06-01T12:00:00.123Z] codex",
        "2025-06-01T12:00:00.123456Z  INFO codex_exec: starting",
        "2025-06-01T12:00:00Z ERROR codex_core::client: stream error",
        "2025-06-01T12:00:00Z WARN x",
        "OpenAI Codex v0.20.0 (research preview)",
        "----",
        "--------------------",
        "workdir: /tmp/x",
        "model: gpt-5",
        "provider: openai",
        "approval: never",
        "sandbox: read-only",
        "reasoning effort: medium",
        "reasoning summaries: auto",
        "session id: 0199-abcd",
        "tokens used: 1,234",
        "tokens used 99",
        "diff --git a/x.py b/x.py",
        "index 1a2b3c4..5d6e7f8 100644",
        "--- a/x.py",
        "+++ b/x.py",
        "@@ -1,3 +1,4 @@ def f():",
    ],
)
def test_operational_lines_are_dropped(raw: str) -> None:
    [message, _] = plain(["Answer\n", raw + "\n", "End\n"])
    # (A "[timestamp] codex" header drops everything before it too: the answer follows it.)
    assert raw not in message.text and message.text.endswith("End")


@pytest.mark.parametrize(
    "raw",
    [
        "The answer is 42.",
        "",
        "---",
        "- a bullet",
        "My model: gpt-5 is great",
        "Tokens used: 10 is a fine answer?",
        "2025-06-01 was a Sunday",
        "[link](https://example.com)",
        "diff --git",
        "+ added line",
        "@@ not a hunk",
        "index of the book",
    ],
)
def test_answer_lines_are_kept(raw: str) -> None:
    [message, _] = plain(["Answer\n", raw + "\n", "End\n"])
    assert message.text == f"Answer\n{raw}\nEnd"


def test_plain_reader_drops_operational_lines_inside_the_answer() -> None:
    stdout = ["Here you go:\n", "tokens used: 500\n", "Bye\n"]
    assert plain(stdout)[0] == MessageDone("plain", "Here you go:\nBye")
