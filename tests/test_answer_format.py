"""Unit tests for answer.py (the answer policy) and openai_format.py (the wire format)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from codex_openai_proxy.answer import (
    MESSAGE_SEPARATOR,
    AnswerAssembler,
    Content,
    Failed,
    Finished,
    Output,
    Reasoning,
    ToolCallOut,
    codex_failure_error,
)
from codex_openai_proxy.codex_events import (
    CodexEvent,
    MessageDelta,
    MessageDone,
    Notice,
    ReasoningDelta,
    ReasoningDone,
    ResponseCompleted,
    ToolCallRequested,
    TurnCompleted,
    TurnFailed,
    Usage,
)
from codex_openai_proxy.errors import ApiError
from codex_openai_proxy.openai_format import (
    DONE,
    KEEPALIVE,
    ChunkStream,
    CompletionBuilder,
    error_event,
    new_completion_id,
    sse,
    tool_call_body,
    usage_body,
)

USAGE = Usage(input_tokens=100, cached_input_tokens=60, output_tokens=30,
              reasoning_output_tokens=12)
USAGE_BODY = {
    "prompt_tokens": 100,
    "completion_tokens": 30,
    "total_tokens": 130,
    "prompt_tokens_details": {"cached_tokens": 60},
    "completion_tokens_details": {"reasoning_tokens": 12},
    "cache_read_input_tokens": 60,
}
CALL = ToolCallRequested("call_1", "get_weather", '{"city":"Paris"}')


def run(events: list[CodexEvent], **kwargs: Any) -> list[Output]:
    assembler = AnswerAssembler(**kwargs)
    outputs: list[Output] = []
    for event in events:
        outputs += assembler.feed(event)
    return outputs


def content_of(outputs: list[Output]) -> str:
    return "".join(out.text for out in outputs if isinstance(out, Content))


# -- AnswerAssembler: incremental mode ---------------------------------------------------------


def test_incremental_sends_each_message_as_it_completes() -> None:
    assembler = AnswerAssembler(stream_mode="incremental")
    assert assembler.feed(MessageDone("m1", "First.")) == [Content("First.")]
    assert assembler.feed(MessageDone("m2", "Second.")) == [Content("\n\nSecond.")]
    assert assembler.feed(TurnCompleted(USAGE)) == [Finished("stop", USAGE)]
    assert assembler.ended


def test_message_separator_is_a_blank_line() -> None:
    assert MESSAGE_SEPARATOR == "\n\n"


def test_incremental_is_the_default() -> None:
    assert run([MessageDone("a", "x"), MessageDone("b", "y"), TurnCompleted(None)]) == [
        Content("x"), Content("\n\ny"), Finished("stop", None)
    ]


def test_deltas_then_done_are_not_sent_twice() -> None:
    outputs = run([
        MessageDelta("m1", "Hel"),
        MessageDelta("m1", "lo"),
        MessageDone("m1", "Hello"),
        TurnCompleted(None),
    ])
    assert outputs == [Content("Hel"), Content("lo"), Finished("stop", None)]


def test_done_sends_only_what_the_deltas_missed() -> None:
    outputs = run([MessageDelta("m1", "Hel"), MessageDone("m1", "Hello world")])
    assert outputs == [Content("Hel"), Content("lo world")]


def test_done_that_disagrees_with_the_deltas_adds_nothing() -> None:
    outputs = run([MessageDelta("m1", "Hello"), MessageDone("m1", "Goodbye")])
    assert outputs == [Content("Hello")]


def test_deltas_of_two_messages_are_a_blank_line_apart() -> None:
    outputs = run([
        MessageDelta("m1", "One"),
        MessageDone("m1", "One"),
        MessageDelta("m2", "Two"),
        MessageDelta("m2", "!"),
        MessageDone("m2", "Two!"),
        TurnCompleted(None),
    ])
    assert content_of(outputs) == "One\n\nTwo!"
    assert outputs[1] == Content("\n\nTwo")


def test_empty_messages_add_no_separator() -> None:
    outputs = run([
        MessageDone("m0", ""),
        MessageDelta("m1", ""),
        MessageDone("m1", "Answer"),
        MessageDone("m2", ""),
        TurnCompleted(None),
    ])
    assert outputs == [Content("Answer"), Finished("stop", None)]


def test_three_messages_in_incremental_mode() -> None:
    outputs = run([MessageDone("a", "A"), MessageDone("b", "B"), MessageDone("c", "C"),
                   TurnCompleted(None)])
    assert content_of(outputs) == "A\n\nB\n\nC"


# -- AnswerAssembler: final mode ---------------------------------------------------------------


def test_final_mode_sends_only_the_last_message_at_the_end() -> None:
    assembler = AnswerAssembler(stream_mode="final")
    assert assembler.feed(MessageDone("m1", "Working on it...")) == []
    assert assembler.feed(MessageDelta("m2", "The ans")) == []
    assert assembler.feed(MessageDone("m2", "The answer.")) == []
    assert assembler.feed(TurnCompleted(USAGE)) == [
        Content("The answer."), Finished("stop", USAGE)
    ]


def test_final_mode_without_messages_is_an_empty_answer() -> None:
    assert run([TurnCompleted(None)], stream_mode="final") == [Finished("stop", None)]


def test_final_mode_still_streams_reasoning() -> None:
    outputs = run([ReasoningDone("r", "think"), MessageDone("m", "A"), TurnCompleted(None)],
                  stream_mode="final")
    assert outputs == [Reasoning("think"), Content("A"), Finished("stop", None)]


# -- reasoning ---------------------------------------------------------------------------------


def test_reasoning_is_its_own_channel() -> None:
    outputs = run([
        ReasoningDelta("r1", "Let me "),
        ReasoningDelta("r1", "think"),
        ReasoningDone("r1", "Let me think"),
        MessageDone("m1", "Answer"),
        ReasoningDone("r2", "More"),
        MessageDone("m2", "More answer"),
        TurnCompleted(None),
    ])
    assert outputs == [
        Reasoning("Let me "),
        Reasoning("think"),
        Content("Answer"),
        Reasoning("\n\nMore"),
        Content("\n\nMore answer"),
        Finished("stop", None),
    ]


def test_reasoning_done_without_deltas() -> None:
    assert run([ReasoningDone("r", "Plan")]) == [Reasoning("Plan")]


def test_notices_produce_nothing() -> None:
    assert run([Notice("command_execution", "ls"), Notice("retry", "1/5"),
                Notice("garbage", "x")]) == []


# -- tool calls --------------------------------------------------------------------------------


def test_tool_calls_end_with_finish_reason_tool_calls() -> None:
    other = ToolCallRequested("call_2", "get_time", "{}")
    assembler = AnswerAssembler()
    assert assembler.feed(MessageDone("m", "Let me check.")) == [Content("Let me check.")]
    assert assembler.feed(CALL) == [ToolCallOut(0, CALL)]
    assert assembler.feed(other) == [ToolCallOut(1, other)]
    assert assembler.feed(TurnCompleted(USAGE)) == [Finished("tool_calls", USAGE)]


def test_tool_required_and_a_tool_was_called() -> None:
    assert run([CALL, TurnCompleted(None)], tool_required=True) == [
        ToolCallOut(0, CALL), Finished("tool_calls", None)
    ]


@pytest.mark.parametrize("mode", ["incremental", "final"])
def test_tool_required_but_no_tool_called_is_a_failure(mode: Any) -> None:
    outputs = run([MessageDone("m", "I won't."), TurnCompleted(None)],
                  stream_mode=mode, tool_required=True)
    failed = outputs[-1]
    assert isinstance(failed, Failed)
    assert not any(isinstance(out, Finished) for out in outputs)
    error = failed.error
    assert error.status == 502
    assert error.type == "api_error"
    assert error.param == "tool_choice"
    assert error.code == "tool_call_required"
    assert error.headers == {"x-should-retry": "false"}
    assert "required" in error.message
    # The text is held back, so a client never shows it as if it were the answer.
    assert not any(isinstance(out, Content) for out in outputs)


@pytest.mark.parametrize("mode", ["incremental", "final"])
def test_text_held_under_required_is_released_with_the_call(mode: Any) -> None:
    outputs = run([MessageDelta("m", "Let me "), MessageDone("m", "Let me check."), CALL,
                   ResponseCompleted(None)], stream_mode=mode, tool_required=True)
    text = "".join(out.text for out in outputs if isinstance(out, Content))
    assert text == "Let me check."
    assert isinstance(outputs[-1], Finished) and outputs[-1].finish_reason == "tool_calls"
    if mode == "incremental":  # the held text goes out first, just before the call
        first_call = next(i for i, out in enumerate(outputs) if isinstance(out, ToolCallOut))
        assert first_call > 0
        assert all(isinstance(out, Content) for out in outputs[:first_call])


# -- failures ----------------------------------------------------------------------------------


def test_failed_turn_becomes_a_502_that_should_not_be_retried() -> None:
    assembler = AnswerAssembler()
    assembler.feed(MessageDone("m", "partial"))
    [failed] = assembler.feed(TurnFailed("model overloaded"))
    assert isinstance(failed, Failed)
    assert failed.error.status == 502
    assert failed.error.message == "model overloaded"
    assert failed.error.type == "api_error"
    assert failed.error.code == "codex_error"
    assert failed.error.headers == {"x-should-retry": "false"}
    assert assembler.ended


def test_auth_failure_has_its_own_code() -> None:
    error = codex_failure_error(TurnFailed("run codex login", "auth"))
    assert error.code == "codex_not_logged_in"
    assert error.status == 502
    assert error.message == "run codex login"


def test_nothing_after_the_end() -> None:
    assembler = AnswerAssembler()
    assembler.feed(TurnCompleted(None))
    assert assembler.feed(MessageDone("late", "late")) == []
    assert assembler.feed(TurnFailed("late failure")) == []
    assert assembler.feed(TurnCompleted(None)) == []


def test_a_failed_turn_ends_the_answer_once() -> None:
    assembler = AnswerAssembler()
    [failed] = assembler.feed(TurnFailed("first"))
    assert isinstance(failed, Failed) and failed.error.message == "first"
    assert assembler.ended
    assert assembler.feed(TurnFailed("second")) == []
    assert assembler.feed(MessageDone("m", "x")) == []
    assert assembler.feed(TurnCompleted(None)) == []


# -- usage and tool call bodies ----------------------------------------------------------------


def test_usage_body_maps_codex_counts_to_openai_names() -> None:
    assert usage_body(USAGE) == USAGE_BODY


def test_usage_body_without_usage_is_zeros() -> None:
    assert usage_body(None) == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
        "cache_read_input_tokens": 0,
    }


def test_tool_call_body() -> None:
    assert tool_call_body(ToolCallOut(3, CALL)) == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }


def test_new_completion_id() -> None:
    first, second = new_completion_id(), new_completion_id()
    assert first.startswith("chatcmpl-")
    assert len(first) == len("chatcmpl-") + 24
    assert first != second


# -- ChunkStream -------------------------------------------------------------------------------


def sse_payloads(raw: bytes) -> list[Any]:
    """Every `data:` payload, checking the framing: only `data:` lines, a blank line after each."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n")
    payloads: list[Any] = []
    for event in text[:-2].split("\n\n"):
        assert "\n" not in event, event
        assert event.startswith("data: "), event
        data = event[len("data: "):]
        payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


def stream(include_usage: bool = False) -> ChunkStream:
    return ChunkStream("chatcmpl-abc", 1_700_000_000, "gpt-5", include_usage)


HEAD = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "gpt-5"}


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {**HEAD, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                 "finish_reason": finish_reason}]}


def test_role_chunk_comes_first() -> None:
    assert sse_payloads(stream().start()) == [chunk({"role": "assistant", "content": ""})]


def test_content_and_reasoning_chunks() -> None:
    chunks = stream()
    assert sse_payloads(chunks.render(Content("Hi"))) == [chunk({"content": "Hi"})]
    assert sse_payloads(chunks.render(Reasoning("hmm"))) == [chunk({"reasoning_content": "hmm"})]


def test_tool_call_chunk() -> None:
    assert sse_payloads(stream().render(ToolCallOut(0, CALL))) == [chunk({"tool_calls": [{
        "index": 0, "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }]})]


@pytest.mark.parametrize("reason", ["stop", "tool_calls"])
def test_finish_without_usage(reason: Any) -> None:
    raw = stream().render(Finished(reason, USAGE))
    assert sse_payloads(raw) == [chunk({}, reason), "[DONE]"]
    assert raw.endswith(DONE)
    assert b"usage" not in raw


def test_finish_with_include_usage_adds_a_usage_chunk_without_choices() -> None:
    raw = stream(include_usage=True).render(Finished("stop", USAGE))
    finish, usage, done = sse_payloads(raw)
    assert finish == {**chunk({}, "stop"), "usage": None}
    assert usage == {**HEAD, "choices": [], "usage": USAGE_BODY}
    assert done == "[DONE]"


def test_include_usage_with_unknown_usage_reports_zeros() -> None:
    _, usage, _ = sse_payloads(stream(include_usage=True).render(Finished("stop", None)))
    assert usage["usage"]["total_tokens"] == 0
    assert usage["choices"] == []


def test_with_include_usage_every_other_chunk_has_null_usage() -> None:
    chunks = stream(include_usage=True)
    for raw in (chunks.start(), chunks.render(Content("x")), chunks.render(Reasoning("y")),
                chunks.render(ToolCallOut(0, CALL))):
        [payload] = sse_payloads(raw)
        assert payload["usage"] is None
        assert len(payload["choices"]) == 1


def test_failed_renders_an_error_event_and_done() -> None:
    error = ApiError(502, "model overloaded", "api_error", None, "codex_error")
    raw = stream().render(Failed(error))
    assert raw == error_event(error)
    assert sse_payloads(raw) == [
        {"error": {"message": "model overloaded", "type": "api_error", "param": None,
                   "code": "codex_error"}},
        "[DONE]",
    ]


def test_error_event_shape() -> None:
    error = ApiError(400, "bad", "invalid_request_error", "messages[0].content", "x")
    assert sse_payloads(error_event(error)) == [
        {"error": {"message": "bad", "type": "invalid_request_error",
                   "param": "messages[0].content", "code": "x"}},
        "[DONE]",
    ]


def test_render_refuses_unknown_outputs() -> None:
    with pytest.raises(TypeError):
        stream().render("text")  # type: ignore[arg-type]


def test_sse_is_compact_utf8_on_one_line() -> None:
    raw = sse({"content": "Zürich\nline two ☃"})
    assert raw == 'data: {"content":"Zürich\\nline two ☃"}\n\n'.encode()


def test_constants() -> None:
    assert DONE == b"data: [DONE]\n\n"
    assert KEEPALIVE.startswith(b":")
    assert KEEPALIVE.endswith(b"\n\n")


@pytest.mark.parametrize("include_usage", [False, True])
def test_whole_stream_from_codex_events(include_usage: bool) -> None:
    assembler = AnswerAssembler()
    chunks = stream(include_usage)
    raw = chunks.start()
    for event in [
        ReasoningDone("r", "Thinking"),
        MessageDone("m1", "Step one."),
        Notice("command_execution", "ls"),
        MessageDone("m2", "Done."),
        TurnCompleted(USAGE),
    ]:
        for output in assembler.feed(event):
            raw += chunks.render(output)
    assert b"event:" not in raw
    payloads = sse_payloads(raw)
    assert payloads[-1] == "[DONE]"
    assert raw.count(DONE) == 1
    deltas = [p["choices"][0]["delta"] for p in payloads[:-1] if p["choices"]]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Thinking"},
        {"content": "Step one."},
        {"content": "\n\nDone."},
        {},
    ]
    finish_reasons = [p["choices"][0]["finish_reason"] for p in payloads[:-1] if p["choices"]]
    assert finish_reasons == [None, None, None, None, "stop"]
    usage_chunks = [p for p in payloads[:-1] if not p["choices"]]
    if include_usage:
        assert [p["usage"] for p in usage_chunks] == [USAGE_BODY]
        assert payloads[-2] is usage_chunks[0]  # the usage chunk is last before [DONE]
    else:
        assert usage_chunks == []
        assert all("usage" not in p for p in payloads[:-1])


# -- CompletionBuilder -------------------------------------------------------------------------


def builder() -> CompletionBuilder:
    return CompletionBuilder("chatcmpl-xyz", 1_700_000_001, "o3")


def build(outputs: list[Output]) -> dict[str, Any]:
    """The completion of an answer: its outputs, the last of which is its `Finished`."""
    *parts, finished = outputs
    assert isinstance(finished, Finished)
    completion = builder()
    for output in parts:
        completion.add(output)
    return completion.body(finished)


def test_completion_body() -> None:
    assert build([Content("Hello"), Content(" world"), Finished("stop", USAGE)]) == {
        "id": "chatcmpl-xyz",
        "object": "chat.completion",
        "created": 1_700_000_001,
        "model": "o3",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Hello world", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": USAGE_BODY,
    }


def test_completion_with_reasoning_content() -> None:
    body = build([Reasoning("Let me "), Reasoning("think"), Content("42"),
                  Finished("stop", None)])
    message = body["choices"][0]["message"]
    assert message["reasoning_content"] == "Let me think"
    assert message["content"] == "42"
    assert body["usage"] == usage_body(None)


def test_completion_without_reasoning_has_no_reasoning_key() -> None:
    body = build([Content("x"), Finished("stop", None)])
    assert "reasoning_content" not in body["choices"][0]["message"]
    assert "tool_calls" not in body["choices"][0]["message"]


def test_empty_completion_has_empty_string_content() -> None:
    body = build([Finished("stop", None)])
    assert body["choices"][0]["message"]["content"] == ""


def test_tool_calls_without_text_have_null_content() -> None:
    other = ToolCallRequested("call_2", "get_time", "{}")
    body = build([ToolCallOut(0, CALL), ToolCallOut(1, other), Finished("tool_calls", USAGE)])
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    # OpenAI's message.tool_calls entries have no `index`: that belongs to stream deltas.
    assert choice["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    assert json.loads(json.dumps(body))["choices"][0]["message"]["content"] is None


def test_tool_calls_with_text_keep_the_text() -> None:
    body = build([Content("Checking."), ToolCallOut(0, CALL), Finished("tool_calls", None)])
    message = body["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert message["tool_calls"][0]["id"] == "call_1"


def test_completion_from_a_final_mode_run() -> None:
    body = build(run([MessageDone("m1", "draft"), MessageDone("m2", "final"),
                      TurnCompleted(USAGE)], stream_mode="final"))
    assert body["choices"][0]["message"]["content"] == "final"
    assert body["usage"]["total_tokens"] == 130


def test_a_response_without_client_tool_calls_does_not_end_the_answer() -> None:
    outputs = run([ResponseCompleted(None), MessageDone("m", "Hi."), TurnCompleted(None)])
    assert outputs == [Content("Hi."), Finished("stop", None)]


def test_a_response_with_tool_calls_ends_the_answer_with_its_usage() -> None:
    usage = Usage(input_tokens=7, output_tokens=3)
    outputs = run([CALL, ResponseCompleted(usage), MessageDone("m", "late"), TurnCompleted(None)])
    assert outputs == [ToolCallOut(0, CALL), Finished("tool_calls", usage)]


def test_without_parallel_tool_calls_only_the_first_call_is_answered() -> None:
    second = ToolCallRequested("call_2", "get_time", "{}")
    outputs = run([CALL, second, ResponseCompleted(None)], parallel_tool_calls=False)
    assert outputs == [ToolCallOut(0, CALL), Finished("tool_calls", None)]
