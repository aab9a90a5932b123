"""The `codex app-server` conversation for one run, as a sans-I/O state machine.

`codex app-server` speaks JSON-RPC over stdio, one JSON object per line, without the
`"jsonrpc"` member. Checked against codex-cli 0.169.0 and codex-rs/app-server-protocol:

    -> initialize {clientInfo, capabilities: {experimentalApi}}     <- result
    -> initialized (notification)
    -> thread/start {cwd, model, sandbox, approvalPolicy, ephemeral, developerInstructions,
                     dynamicTools}                                  <- result {thread: {id}}
    -> turn/start {threadId, input: [{type: text|localImage}], effort} <- result {turn: {id}}
    <- item/agentMessage/delta {itemId, delta}          token by token, as the model writes
    <- item/reasoning/summaryTextDelta {itemId, delta, summaryIndex}
    <- item/completed {item: agentMessage{text} | reasoning{summary[]} | ...}
    <- thread/tokenUsage/updated {tokenUsage: {total: {inputTokens, ...}}}
    <- error {error: {message}, willRetry}               retry notices, or the failure
    <- turn/completed {turn: {status: completed|failed|interrupted, error}}
    <- item/tool/call (a request: has both `id` and `method`) when the model calls a client tool

With client tools, `thread/start` also asks for `experimentalRawEvents`, which adds the model's
own output items and the end of each model response:

    <- rawResponseItem/completed {item: {type: function_call, call_id, name, arguments}}
    <- rawResponse/completed {responseId, usage: {inputTokens, ...}}

A turn that calls client tools never ends by itself: Codex waits for the results, which only
the client can give, with its next request. So the answer ends when the model's response does
(`rawResponse/completed`, which carries that response's usage), and the tool calls are taken
from the raw `function_call` items, whose `arguments` are the model's exact text. An
`item/tool/call` for a call no raw item announced (a model that reaches the tools through
Codex's JavaScript `exec` tool) arrives after its response ended, and ends the answer itself.

The server's own requests share the `id` member with our responses, so a message is a request
to us when it has a `method`, and a response to us only when it has none.
`AppServerSession` is fed stdout lines and answers with messages to write to stdin and with
`CodexEvent`s; the runner does the I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .codex_events import (
    CodexEvent,
    MessageDelta,
    MessageDone,
    Notice,
    ReasoningDelta,
    ReasoningDone,
    ResponseCompleted,
    ToolCallRequested,
    TurnCompleted,
    Usage,
    failure,
    parse_usage,
)

#: JSON-RPC "method not found", for server requests the proxy does not handle.
METHOD_NOT_FOUND = -32601


@dataclass(frozen=True)
class DynamicTool:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class TurnPlan:
    """Everything the conversation needs to know about the run, decided by the runner."""

    prompt: str
    cwd: str
    model: str | None = None
    effort: str | None = None
    #: Replaces Codex's own system prompt (a client that brings tools brings its own agent);
    #: "" replaces it with nothing, None keeps it.
    base_instructions: str | None = None
    developer_instructions: str | None = None
    image_paths: Sequence[str] = ()
    tools: Sequence[DynamicTool] = ()


@dataclass
class AppServerSession:
    plan: TurnPlan
    thread_id: str | None = None
    turn_id: str | None = None
    finished: bool = False
    _next_id: int = 1
    _pending: dict[int, str] = field(default_factory=dict)  # our request id -> method
    _usage: Usage | None = None
    _last_error: str | None = None
    _calls_seen: set[str] = field(default_factory=set)
    _response_usage: Usage | None = None

    # -- what to send ---------------------------------------------------------------------------

    def start(self) -> list[dict[str, Any]]:
        return [self._request("initialize", {
            "clientInfo": {"name": "codex-openai-proxy", "title": "codex-openai-proxy",
                           "version": __version__},
            # Dynamic (client-defined) tools are an experimental part of the API.
            "capabilities": {"experimentalApi": True},
        })]

    def interrupt(self) -> list[dict[str, Any]]:
        """Ask Codex to stop the turn (before any signal is sent), if one is running."""
        if self.finished or self.thread_id is None or self.turn_id is None:
            return []
        return [self._request("turn/interrupt",
                              {"threadId": self.thread_id, "turnId": self.turn_id})]

    def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = method
        return {"id": request_id, "method": method, "params": params}

    def _thread_start(self) -> dict[str, Any]:
        plan = self.plan
        params: dict[str, Any] = {
            "cwd": plan.cwd,
            "sandbox": "read-only",
            "approvalPolicy": "never",
            "ephemeral": True,
        }
        if plan.model is not None:
            params["model"] = plan.model
        if plan.base_instructions is not None:
            params["baseInstructions"] = plan.base_instructions
        if plan.developer_instructions:
            params["developerInstructions"] = plan.developer_instructions
        if plan.tools:
            params["experimentalRawEvents"] = True
            params["dynamicTools"] = [
                {"type": "function", "name": tool.name, "description": tool.description,
                 "inputSchema": tool.input_schema}
                for tool in plan.tools
            ]
        return self._request("thread/start", params)

    def _turn_start(self) -> dict[str, Any]:
        plan = self.plan
        inputs: list[dict[str, Any]] = [
            {"type": "localImage", "path": path} for path in plan.image_paths
        ]
        inputs.append({"type": "text", "text": plan.prompt, "text_elements": []})
        params: dict[str, Any] = {"threadId": self.thread_id, "input": inputs}
        if plan.effort is not None:
            params["effort"] = plan.effort
        return self._request("turn/start", params)

    # -- what arrives ---------------------------------------------------------------------------

    def feed(self, line: str) -> tuple[list[dict[str, Any]], list[CodexEvent]]:
        """One stdout line in; messages to write and events out."""
        if not line.strip():
            return [], []
        try:
            message = json.loads(line)
        except ValueError:
            return [], [Notice("garbage", line.strip()[:300])]
        if not isinstance(message, dict):
            return [], [Notice("garbage", line.strip()[:300])]
        params = message.get("params")
        request_id = message.get("id")
        if not isinstance(params, dict | None) or not isinstance(request_id, int | str | None):
            return [], [Notice("garbage", line.strip()[:300])]
        if "method" in message:
            if request_id is not None:
                return self._server_request(message)
            return [], self._notification(str(message["method"]), params or {})
        if request_id is not None:
            return self._response(message)
        return [], [Notice("garbage", line.strip()[:300])]

    def _response(self, message: dict[str, Any]) -> tuple[list[dict[str, Any]], list[CodexEvent]]:
        method = self._pending.pop(message["id"], None)
        error = message.get("error")
        if error is not None:
            if method == "turn/interrupt":
                return [], [Notice("interrupt", str(error))]
            detail = error.get("message") if isinstance(error, dict) else str(error)
            return [], self._fail(f"Codex app-server refused {method}: {detail}")
        result = message.get("result")
        result = result if isinstance(result, dict) else {}
        if method == "initialize":
            return [{"method": "initialized"}, self._thread_start()], []
        if method == "thread/start":
            self.thread_id = _get(result, "thread", "id")
            if not self.thread_id:
                return [], self._fail("Codex app-server started no thread.")
            return [self._turn_start()], []
        if method == "turn/start":
            self.turn_id = self.turn_id or _get(result, "turn", "id")
        return [], []

    def _server_request(
        self, message: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[CodexEvent]]:
        method, params = message["method"], message.get("params") or {}
        if method == "item/tool/call":
            # The client gets the call; its result arrives with the client's next request,
            # never on this child, so the request is left unanswered here.
            call_id = str(params.get("callId", ""))
            if call_id in self._calls_seen:
                return [], []  # announced already by its raw item
            self._calls_seen.add(call_id)
            arguments = params.get("arguments")
            return [], [
                ToolCallRequested(
                    call_id=call_id,
                    name=str(params.get("tool", "")),
                    arguments=json.dumps(arguments if arguments is not None else {},
                                         ensure_ascii=False, separators=(",", ":")),
                ),
                ResponseCompleted(self._response_usage),
            ]
        # Approvals cannot come (approvalPolicy is never); anything else is not ours to serve.
        reply = {"id": message["id"], "error": {"code": METHOD_NOT_FOUND,
                                                "message": f"{method} is not supported"}}
        return [reply], [Notice("server_request", method)]

    def _notification(self, method: str, params: dict[str, Any]) -> list[CodexEvent]:
        if method == "turn/started":
            self.turn_id = self.turn_id or _get(params, "turn", "id")
            return []
        if method == "item/agentMessage/delta":
            return [MessageDelta(str(params.get("itemId", "")), str(params.get("delta", "")))]
        if method == "item/reasoning/summaryTextDelta":
            return [ReasoningDelta(_summary_key(params.get("itemId"), params.get("summaryIndex")),
                                   str(params.get("delta", "")))]
        if method == "item/completed":
            return self._item(params.get("item"))
        if method == "rawResponseItem/completed":
            return self._raw_item(params.get("item"))
        if method == "rawResponse/completed":
            self._response_usage = parse_usage(params.get("usage"))
            return [ResponseCompleted(self._response_usage)]
        if method == "thread/tokenUsage/updated":
            # One turn per thread, so the thread's total is the turn's.
            self._usage = parse_usage(_get(params, "tokenUsage", "total"))
            return []
        if method == "error":
            message = str(_get(params, "error", "message") or "")
            if params.get("willRetry"):
                return [Notice("retry", message)]
            self._last_error = message or self._last_error
            return [Notice("error", message)]
        if method in ("warning", "configWarning"):
            return [Notice("warning", str(params.get("message") or params.get("summary") or ""))]
        if method == "turn/completed":
            turn = params.get("turn")
            return self._turn_completed(turn if isinstance(turn, dict) else {})
        return [Notice(method, "")]

    def _item(self, item: Any) -> list[CodexEvent]:
        if not isinstance(item, dict):
            return []
        kind, item_id = item.get("type"), str(item.get("id", ""))
        if kind == "agentMessage":
            return [MessageDone(item_id, str(item.get("text", "")))]
        if kind == "reasoning":
            summary = item.get("summary") or []
            return [ReasoningDone(_summary_key(item_id, index), str(text))
                    for index, text in enumerate(summary) if text]
        return [Notice(str(kind), "")]

    def _raw_item(self, item: Any) -> list[CodexEvent]:
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return []
        name, call_id = item.get("name"), str(item.get("call_id", ""))
        if name not in {tool.name for tool in self.plan.tools} or call_id in self._calls_seen:
            return []  # one of Codex's own tools, or seen already
        self._calls_seen.add(call_id)
        arguments = item.get("arguments")
        return [ToolCallRequested(call_id, name, arguments if isinstance(arguments, str)
                                  else json.dumps(arguments, ensure_ascii=False))]

    def _turn_completed(self, turn: dict[str, Any]) -> list[CodexEvent]:
        if self.finished:
            return []
        self.finished = True
        status = turn.get("status")
        if status == "completed":
            return [TurnCompleted(self._usage)]
        message = _get(turn, "error", "message") or self._last_error
        if status == "interrupted":
            message = message or "The Codex turn was interrupted."
        return [failure(str(message or f"The Codex turn ended with status {status!r}."))]

    def _fail(self, message: str) -> list[CodexEvent]:
        if self.finished:
            return []
        self.finished = True
        return [failure(message)]

    def finish(self, returncode: int | None, stderr_tail: str) -> list[CodexEvent]:
        """The process ended (its stdout closed) before the turn did: a failure."""
        if self.finished:
            return []
        self.finished = True
        detail = self._last_error or stderr_tail.strip()[-1000:]
        head = f"Codex app-server exited with status {returncode} before the turn ended"
        return [failure(f"{head}: {detail}" if detail else f"{head}.")]


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _get(container: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(container, dict):
            return None
        container = container.get(key)
    return container


def _summary_key(item_id: Any, index: Any) -> str:
    # Each summary part is its own block of text, so parts are kept apart like messages.
    return f"{item_id}#{index if isinstance(index, int) else 0}"
