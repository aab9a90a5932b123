"""The OpenAI Chat Completions wire format for an answer (pure).

`ChunkStream` renders the answer as SSE `chat.completion.chunk`s in the order clients rely on:
the role first, deltas, an empty delta with `finish_reason`, the usage chunk (`choices: []`)
when `stream_options.include_usage` asked for it, then `data: [DONE]`. Only `data:` lines are
written, never `event:` lines, which some clients (Roo Code's) do not expect.
`CompletionBuilder` gathers the same outputs into one `chat.completion`.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from .answer import Content, Failed, Finished, Output, Reasoning, ToolCallOut
from .codex_events import Usage
from .errors import ApiError

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def usage_body(usage: Usage | None) -> dict[str, Any]:
    """Codex's counts in OpenAI's names. Output tokens include reasoning tokens on both sides.

    The cached tokens go out twice: in OpenAI's `prompt_tokens_details.cached_tokens`, and as
    `cache_read_input_tokens`, the only name Roo Code's OpenAI Compatible handler (and Zoo
    Code's, and LiteLLM's Anthropic-style accounting) reads. They are part of
    `prompt_tokens` either way."""
    usage = usage or Usage()
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_output_tokens},
        "cache_read_input_tokens": usage.cached_input_tokens,
    }


def tool_call_body(out: ToolCallOut) -> dict[str, Any]:
    """A call as `message.tool_calls` holds it; a stream's delta adds the call's `index`."""
    return {
        "id": out.call.call_id,
        "type": "function",
        "function": {"name": out.call.name, "arguments": out.call.arguments},
    }


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    ) + b"\n\n"


class ChunkStream:
    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self._head = {"id": completion_id, "object": "chat.completion.chunk",
                      "created": created, "model": model}
        self._include_usage = include_usage

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        payload: dict[str, Any] = {
            **self._head,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self._include_usage:
            payload["usage"] = None  # as OpenAI does: only the last chunk carries usage
        return sse(payload)

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def keepalive(self) -> bytes:
        return KEEPALIVE

    def end(self, ending: Finished | Failed) -> bytes:
        return self.render(ending)

    def render(self, output: Output) -> bytes:
        match output:
            case Content(text):
                return self._chunk({"content": text})
            case Reasoning(text):
                return self._chunk({"reasoning_content": text})
            case ToolCallOut():
                call = {"index": output.index, **tool_call_body(output)}
                return self._chunk({"tool_calls": [call]})
            case Finished(finish_reason, usage):
                tail = self._chunk({}, finish_reason)
                if self._include_usage:
                    tail += sse({**self._head, "choices": [], "usage": usage_body(usage)})
                return tail + DONE
            case Failed(error):
                return error_event(error)
        raise TypeError(f"not an answer output: {output!r}")


def error_event(error: ApiError) -> bytes:
    """An error inside an open stream: the status is already sent, so it travels as data."""
    return sse(error.body()) + DONE


class CompletionBuilder:
    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._head = {"id": completion_id, "object": "chat.completion",
                      "created": created, "model": model}
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._tool_calls: list[dict[str, Any]] = []

    def add(self, output: Output) -> None:
        match output:
            case Content(text):
                self._content.append(text)
            case Reasoning(text):
                self._reasoning.append(text)
            case ToolCallOut():
                self._tool_calls.append(tool_call_body(output))

    def body(self, finished: Finished) -> dict[str, Any]:
        """The whole `chat.completion`, once the answer has finished."""
        content = "".join(self._content)
        message: dict[str, Any] = {
            "role": "assistant",
            # OpenAI sends null content beside tool calls when the model said nothing first.
            "content": content if content or not self._tool_calls else None,
            "refusal": None,
        }
        if self._reasoning:
            message["reasoning_content"] = "".join(self._reasoning)
        if self._tool_calls:
            message["tool_calls"] = self._tool_calls
        return {
            **self._head,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finished.finish_reason}],
            "usage": usage_body(finished.usage),
        }
