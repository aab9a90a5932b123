"""The OpenAI Responses API wire format for an answer (pure).

The same outputs the chat wire format renders (`answer.Output`: content, reasoning, tool
calls, then `Finished` or `Failed`) become Responses output items: a `reasoning` item for
reasoning summaries, a `message` item for text, a `function_call` item per tool call, in the
order they come. `ResponseStream` renders them as the Responses SSE sequence, each event an
`event:` and a `data:` line with a `sequence_number`:

    response.created, response.in_progress
    response.output_item.added                      per item, then
      reasoning: response.reasoning_summary_part.added, ...summary_text.delta*,
                 ...summary_text.done, ...summary_part.done
      message:   response.content_part.added, response.output_text.delta*,
                 response.output_text.done, response.content_part.done
      function_call: response.function_call_arguments.delta, ...arguments.done
    response.output_item.done
    response.completed (with output and usage)  |  response.failed (with the error)

as OpenAI's own API sends it, with the fields the openai SDKs' stream helpers (Python and
Node) need to accumulate the response, and that the Codex CLI, as a client, reads. No
`data: [DONE]`. `ResponseBuilder` gathers the same items into the one response object of a
request that does not stream.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from .answer import Content, Failed, Finished, Output, Reasoning, ToolCallOut
from .codex_events import Usage
from .errors import ApiError


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(16)


def _item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def usage_body(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_output_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


@dataclass
class _OpenItem:
    kind: str  # "reasoning" or "message"
    item_id: str
    output_index: int
    text: list[str] = field(default_factory=list)


class ResponseItems:
    """The answer's output items as they come, and the events that say so."""

    def __init__(self) -> None:
        self.output: list[dict[str, Any]] = []  # the items finished so far
        self._open: _OpenItem | None = None

    def add(self, output: Output) -> list[dict[str, Any]]:
        match output:
            case Reasoning(text):
                return self._text("reasoning", text)
            case Content(text):
                return self._text("message", text)
            case ToolCallOut(_, call):
                events = self.close()
                item_id, index = _item_id("fc"), len(self.output)
                item = {"id": item_id, "type": "function_call", "status": "in_progress",
                        "arguments": "", "call_id": call.call_id, "name": call.name}
                done = {**item, "status": "completed", "arguments": call.arguments}
                self.output.append(done)
                return [*events,
                        {"type": "response.output_item.added", "output_index": index,
                         "item": item},
                        {"type": "response.function_call_arguments.delta", "item_id": item_id,
                         "output_index": index, "delta": call.arguments},
                        {"type": "response.function_call_arguments.done", "item_id": item_id,
                         "output_index": index, "name": call.name,
                         "arguments": call.arguments},
                        {"type": "response.output_item.done", "output_index": index,
                         "item": done}]
        return []

    def _text(self, kind: str, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._open is None or self._open.kind != kind:
            events += self.close()
            self._open = _OpenItem(kind, _item_id("rs" if kind == "reasoning" else "msg"),
                                   len(self.output))
            events += self._opening(self._open)
        item = self._open
        item.text.append(text)
        where = {"item_id": item.item_id, "output_index": item.output_index}
        if kind == "reasoning":
            events.append({"type": "response.reasoning_summary_text.delta", **where,
                           "summary_index": 0, "delta": text})
        else:
            events.append({"type": "response.output_text.delta", **where, "content_index": 0,
                           "delta": text, "logprobs": []})
        return events

    @staticmethod
    def _opening(item: _OpenItem) -> list[dict[str, Any]]:
        where = {"item_id": item.item_id, "output_index": item.output_index}
        if item.kind == "reasoning":
            return [{"type": "response.output_item.added", "output_index": item.output_index,
                     "item": {"id": item.item_id, "type": "reasoning", "summary": []}},
                    {"type": "response.reasoning_summary_part.added", **where,
                     "summary_index": 0, "part": {"type": "summary_text", "text": ""}}]
        return [{"type": "response.output_item.added", "output_index": item.output_index,
                 "item": {"id": item.item_id, "type": "message", "status": "in_progress",
                          "role": "assistant", "content": []}},
                {"type": "response.content_part.added", **where, "content_index": 0,
                 "part": _text_part("")}]

    def close(self) -> list[dict[str, Any]]:
        """Finish the item being written, if there is one."""
        item, self._open = self._open, None
        if item is None:
            return []
        text = "".join(item.text)
        where = {"item_id": item.item_id, "output_index": item.output_index}
        if item.kind == "reasoning":
            done = {"id": item.item_id, "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": text}]}
            events = [{"type": "response.reasoning_summary_text.done", **where,
                       "summary_index": 0, "text": text},
                      {"type": "response.reasoning_summary_part.done", **where,
                       "summary_index": 0, "part": {"type": "summary_text", "text": text}}]
        else:
            done = {"id": item.item_id, "type": "message", "status": "completed",
                    "role": "assistant", "content": [_text_part(text)]}
            events = [{"type": "response.output_text.done", **where, "content_index": 0,
                       "text": text, "logprobs": []},
                      {"type": "response.content_part.done", **where, "content_index": 0,
                       "part": _text_part(text)}]
        self.output.append(done)
        return [*events, {"type": "response.output_item.done",
                          "output_index": item.output_index, "item": done}]

    @property
    def output_text(self) -> str:
        return "".join(part["text"] for item in self.output if item["type"] == "message"
                       for part in item["content"])


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


class ResponseObject:
    """The `response` object, in each state the answer goes through."""

    def __init__(self, response_id: str, created_at: int, model: str,
                 echo: dict[str, Any]) -> None:
        self._head = {"id": response_id, "object": "response", "created_at": created_at}
        self._model = model
        self._echo = echo

    def body(self, status: str, output: list[dict[str, Any]], *,
             usage: Usage | None = None, error: ApiError | None = None,
             finished: bool = False) -> dict[str, Any]:
        echo = self._echo
        body: dict[str, Any] = {
            **self._head, "status": status, "model": self._model, "output": output,
            "parallel_tool_calls": echo.get("parallel_tool_calls", True),
            "tool_choice": echo.get("tool_choice", "auto"), "tools": echo.get("tools", []),
            "usage": usage_body(usage) if finished else None,
            "error": {"code": error.code or error.type, "message": error.message}
            if error is not None else None,
            "incomplete_details": None,
            "instructions": echo.get("instructions"),
            "metadata": echo.get("metadata") or {},
            "temperature": echo.get("temperature"),
            "top_p": echo.get("top_p"),
            "max_output_tokens": echo.get("max_output_tokens"),
            "previous_response_id": None,
            "reasoning": echo.get("reasoning") or {"effort": None, "summary": None},
            "store": echo.get("store", False),
            "text": echo.get("text") or {"format": {"type": "text"}},
            "truncation": "disabled",
            "user": echo.get("user"),
            "prompt_cache_key": echo.get("prompt_cache_key"),
        }
        return body


class ResponseStream:
    """The SSE events of one streamed response."""

    def __init__(self, response: ResponseObject) -> None:
        self._response = response
        self._items = ResponseItems()
        self._sequence = 0

    def _sse(self, events: list[dict[str, Any]]) -> bytes:
        frames = []
        for event in events:
            event["sequence_number"] = self._sequence
            self._sequence += 1
            data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
            frames.append(f"event: {event['type']}\ndata: {data}\n\n")
        return "".join(frames).encode("utf-8")

    def start(self) -> bytes:
        snapshot = self._response.body("in_progress", [])
        return self._sse([{"type": "response.created", "response": snapshot},
                          {"type": "response.in_progress", "response": snapshot}])

    def keepalive(self) -> bytes:
        """An event for a silence: SSE comments do not count as activity for every client
        (the Codex CLI's stream idle timeout, for one), events do."""
        return self._sse([{"type": "response.in_progress",
                           "response": self._response.body("in_progress", [])}])

    def render(self, output: Output) -> bytes:
        return self._sse(self._items.add(output))

    def finish(self, finished: Finished) -> bytes:
        events = self._items.close()
        events.append({"type": "response.completed", "response": self._response.body(
            "completed", self._items.output, usage=finished.usage, finished=True)})
        return self._sse(events)

    def end(self, ending: Finished | Failed) -> bytes:
        return self.finish(ending) if isinstance(ending, Finished) else self.fail(ending.error)

    def fail(self, error: ApiError) -> bytes:
        events = self._items.close()
        events.append({"type": "response.failed", "response": self._response.body(
            "failed", self._items.output, error=error)})
        return self._sse(events)


class ResponseBuilder:
    """The response object of a request that does not stream."""

    def __init__(self, response: ResponseObject) -> None:
        self._response = response
        self._items = ResponseItems()

    def add(self, output: Output) -> None:
        self._items.add(output)

    def body(self, finished: Finished) -> dict[str, Any]:
        self._items.close()
        body = self._response.body("completed", self._items.output, usage=finished.usage,
                                   finished=True)
        # What the SDKs compute themselves, for clients that read the JSON as it is.
        body["output_text"] = self._items.output_text
        return body
