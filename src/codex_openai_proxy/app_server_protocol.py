"""The `codex app-server` conversation for one run, as a sans-I/O state machine.

`codex app-server` speaks JSON-RPC over stdio, one JSON object per line, without the
`"jsonrpc"` member. Checked against codex-cli 0.169.0 and codex-rs/app-server-protocol:

    -> initialize {clientInfo, capabilities: {experimentalApi}}      <- result
    -> initialized (notification)
    -> thread/resume {threadId, cwd, model, sandbox, approvalPolicy, excludeTurns}
                                                    <- result {thread: {id}}
    -> turn/start {threadId, input: [], effort, summary, outputSchema} <- result {turn: {id}}
    <- item/agentMessage/delta {itemId, delta}          token by token, as the model writes
    <- item/reasoning/summaryTextDelta {itemId, delta, summaryIndex}
    <- item/completed {item: agentMessage{text} | reasoning{summary[]} | ...}
    <- thread/tokenUsage/updated {tokenUsage: {total: {inputTokens, ...}}}
    <- account/rateLimits/updated {rateLimits}           the plan's usage limits (see
                                                        `plan_limits.py`), before turn/completed
    <- error {error: {message, codexErrorInfo}, willRetry}   retry notices, or the failure
    <- turn/completed {turn: {status: completed|failed|interrupted, error}}
    <- item/tool/call (a request: has both `id` and `method`) when the model calls a client tool

The thread is resumed, not started: the proxy has written its rollout file (see `rollout.py`),
with the client's conversation as history, under the conversation's own id, which Codex then
sends upstream as the prompt cache key. The turn starts with no input: the whole conversation
is history already.

A turn that calls client tools never ends by itself: Codex waits for the results, which only
the client can give, with its next request. So the answer ends when the model's response does.
A resumed thread announces neither the end of a response nor the model's exact call items, but
writes both to its rollout file: once a tool call is requested, the driver reads the file's new
lines (`feed_rollout`), and the session takes the calls from its `function_call` items (in the
model's order, with `arguments` exactly as the model wrote them) and the end of the response,
with its usage, from its `token_usage_record`. Should the file not say so in time (a Codex that
writes it differently), `rollout_overdue` ends the answer with the calls as `item/tool/call`
gave them.

The server's own requests share the `id` member with our responses, so a message is a request
to us when it has a `method`, and a response to us only when it has none.
`AppServerSession` is fed stdout lines (and rollout lines) and answers with messages to write
to stdin and with `CodexEvent`s; the driver does the I/O.
"""

from __future__ import annotations

import enum
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
    PlanLimitsUpdated,
    ReasoningDelta,
    ReasoningDone,
    ResponseCompleted,
    ToolCallRequested,
    TurnCompleted,
    Usage,
    error_output,
    failure,
    parse_usage,
    see_the_log,
)

#: JSON-RPC "method not found", for server requests the proxy does not handle.
METHOD_NOT_FOUND = -32601


@dataclass(frozen=True)
class DynamicTool:
    name: str  # the name the model is offered it by
    description: str
    input_schema: dict[str, Any]
    client_name: str = ""  # the client's name for it, when the model's differs


@dataclass(frozen=True)
class TurnPlan:
    """Everything the conversation needs to know about the run, decided before it starts."""

    thread_id: str  # the conversation's id, whose rollout file is in the child's Codex home
    cwd: str
    model: str | None = None
    effort: str | None = None
    summary: str | None = None  # reasoning summaries: auto, concise, detailed, none
    output_schema: dict[str, Any] | None = None
    tools: Sequence[DynamicTool] = ()


class Phase(enum.Enum):
    """Where the conversation with the app-server stands (h11-style: explicit, and changed
    only through `TRANSITIONS`)."""

    IDLE = "idle"  # nothing sent yet
    INITIALIZING = "initializing"  # `initialize` sent, its result awaited
    OPENING_THREAD = "opening the thread"  # `thread/resume` sent, its result awaited
    STARTING_TURN = "starting the turn"  # `turn/start` sent, the turn's id awaited
    TURN_RUNNING = "turn running"  # the turn streams its items
    INTERRUPTING = "interrupting"  # `turn/interrupt` sent, the turn's end awaited
    ENDED = "ended"  # the turn completed or failed, or the conversation failed


class Step(enum.Enum):
    """What moves the conversation on."""

    START = "start"
    INITIALIZED = "initialized"
    THREAD_OPENED = "thread opened"
    TURN_STARTED = "turn started"
    INTERRUPT = "interrupt"
    TURN_ENDED = "turn ended"
    FAILED = "failed"


TRANSITIONS: dict[tuple[Phase, Step], Phase] = {
    (Phase.IDLE, Step.START): Phase.INITIALIZING,
    (Phase.INITIALIZING, Step.INITIALIZED): Phase.OPENING_THREAD,
    (Phase.OPENING_THREAD, Step.THREAD_OPENED): Phase.STARTING_TURN,
    (Phase.STARTING_TURN, Step.TURN_STARTED): Phase.TURN_RUNNING,
    (Phase.TURN_RUNNING, Step.INTERRUPT): Phase.INTERRUPTING,
    (Phase.STARTING_TURN, Step.TURN_ENDED): Phase.ENDED,
    (Phase.TURN_RUNNING, Step.TURN_ENDED): Phase.ENDED,
    (Phase.INTERRUPTING, Step.TURN_ENDED): Phase.ENDED,
    # Anything can fail (a refused request, a child that exits), except what has ended.
    **{(phase, Step.FAILED): Phase.ENDED for phase in Phase if phase is not Phase.ENDED},
}

#: The phases in which the session waits for Codex to answer one of its requests, with the
#: request: the driver bounds each such wait (a child that stops answering is a failure).
AWAITED_REQUEST: dict[Phase, str] = {
    Phase.INITIALIZING: "initialize",
    Phase.OPENING_THREAD: "thread/resume",
    Phase.STARTING_TURN: "turn/start",
    Phase.INTERRUPTING: "turn/interrupt",
}


#: The id of `initialize`, the first request on any child.
INITIALIZE_ID = 1
INITIALIZED = {"method": "initialized"}


def initialize_request() -> dict[str, Any]:
    return {"id": INITIALIZE_ID, "method": "initialize", "params": {
        "clientInfo": {"name": "codex-openai-proxy", "title": "codex-openai-proxy",
                       "version": __version__},
        # Dynamic (client-defined) tools are an experimental part of the API.
        "capabilities": {"experimentalApi": True},
    }}


def initialize_outcome(line: str) -> str | None:
    """Whether `line` answers `initialize_request`: "ok", or the error's text if Codex refused
    it; None for any other line (notifications that come first)."""
    message = _response_to(line, INITIALIZE_ID)
    if message is None:
        return None
    error = message.get("error")
    return "ok" if error is None else _error_text(error)


#: The id of `account/rateLimits/read`, on a child that is asked nothing else.
RATE_LIMITS_READ_ID = 2


def rate_limits_read_request() -> dict[str, Any]:
    """The ChatGPT plan's usage limits, as the backend has them now (a ChatGPT login only)."""
    return {"id": RATE_LIMITS_READ_ID, "method": "account/rateLimits/read"}


def rate_limits_read_outcome(line: str) -> tuple[list[Any], str | None] | None:
    """Whether `line` answers `rate_limits_read_request`: (the limits' snapshots, None), or
    ([], Codex's reason) when it could not read them; None for any other line."""
    message = _response_to(line, RATE_LIMITS_READ_ID)
    if message is None:
        return None
    if (error := message.get("error")) is not None:
        return [], _error_text(error)
    result = message.get("result")
    result = result if isinstance(result, dict) else {}
    by_id = result.get("rateLimitsByLimitId")
    if isinstance(by_id, dict) and by_id:
        return list(by_id.values()), None
    return [result.get("rateLimits")], None


def _response_to(line: str, request_id: int) -> dict[str, Any] | None:
    """`line` as Codex's response to our request `request_id`, or None: another message, or
    not JSON. (The server's own requests to us have a `method` and may share the id.)"""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("id") != request_id or "method" in message:
        return None
    return message


def _error_text(error: Any) -> str:
    return str(error.get("message") if isinstance(error, dict) else error)


class ProtocolMisuse(RuntimeError):
    """The session was asked to do something its phase does not allow: a bug in the caller."""


@dataclass
class AppServerSession:
    plan: TurnPlan
    phase: Phase = Phase.IDLE
    thread_id: str | None = None
    turn_id: str | None = None
    _next_id: int = 1
    _pending: dict[int, str] = field(default_factory=dict)  # our request id -> method
    _usage: Usage | None = None
    _last_error: str | None = None
    _last_error_info: Any = None  # its `codexErrorInfo`: says a usage limit, a rate limit
    _first_garbage: str | None = None
    #: Client tool calls Codex asked for, by call id: (name, arguments as Codex parsed them).
    _requested_calls: dict[str, tuple[str, Any]] = field(default_factory=dict)
    _calls_handed_over: set[str] = field(default_factory=set)

    @property
    def reading_rollout(self) -> bool:
        """Whether the driver should feed the rollout file's new lines: a tool call is out and
        only the file says when the model's response has ended."""
        return bool(self._requested_calls) and not self.finished

    @property
    def finished(self) -> bool:
        """The turn is over (completed, failed or interrupted): nothing more will come of it."""
        return self.phase is Phase.ENDED

    @property
    def awaiting(self) -> str | None:
        """The request whose answer the session waits for, if it waits for one."""
        return AWAITED_REQUEST.get(self.phase)

    def _advance(self, step: Step) -> None:
        try:
            self.phase = TRANSITIONS[self.phase, step]
        except KeyError:
            raise ProtocolMisuse(
                f"{step.value!r} is not possible while {self.phase.value}") from None

    # -- what to send ---------------------------------------------------------------------------

    def start(self, *, initialized: bool = False) -> list[dict[str, Any]]:
        """IDLE only: the first messages: `initialize`; or, for a child that went through
        `initialize` already (a warm spare, see `initialize_request`), `thread/resume`."""
        self._advance(Step.START)
        if initialized:
            self._next_id = INITIALIZE_ID + 1
            self._advance(Step.INITIALIZED)
            return [self._thread_resume()]
        self._pending[INITIALIZE_ID] = "initialize"
        self._next_id = INITIALIZE_ID + 1
        return [initialize_request()]

    def interrupt(self) -> list[dict[str, Any]]:
        """Any phase: ask Codex to stop the turn (before any signal is sent). Only a running
        turn can be interrupted; in any other phase there is nothing to send."""
        if self.phase is not Phase.TURN_RUNNING:
            return []
        self._advance(Step.INTERRUPT)
        return [self._request("turn/interrupt",
                              {"threadId": self.thread_id, "turnId": self.turn_id})]

    def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = method
        return {"id": request_id, "method": method, "params": params}

    def _thread_resume(self) -> dict[str, Any]:
        plan = self.plan
        params: dict[str, Any] = {
            "threadId": plan.thread_id,
            "cwd": plan.cwd,
            "sandbox": "read-only",
            "approvalPolicy": "never",
            # The history is the client's, which it has already: nothing to send back.
            "excludeTurns": True,
        }
        if plan.model is not None:
            params["model"] = plan.model
        return self._request("thread/resume", params)

    def _turn_start(self) -> dict[str, Any]:
        plan = self.plan
        params: dict[str, Any] = {"threadId": self.thread_id, "input": []}
        if plan.effort is not None:
            params["effort"] = plan.effort
        if plan.summary is not None:
            params["summary"] = plan.summary
        if plan.output_schema is not None:
            params["outputSchema"] = plan.output_schema
        return self._request("turn/start", params)

    # -- what arrives ---------------------------------------------------------------------------

    def feed(self, line: str) -> tuple[list[dict[str, Any]], list[CodexEvent]]:
        """Any phase: one stdout line in; messages to write and events out.

        What a line does depends on the phase: a result moves the handshake on only in the
        phase that awaits it; items and deltas are relayed whatever the phase (Codex only
        sends them for a turn); after the end, only notices come out."""
        if not line.strip():
            return [], []
        try:
            message = json.loads(line)
        except ValueError:
            return [], self._garbage(line)
        if not isinstance(message, dict):
            return [], self._garbage(line)
        params = message.get("params")
        request_id = message.get("id")
        if not isinstance(params, dict | None) or not isinstance(request_id, int | str | None):
            return [], self._garbage(line)
        if "method" in message:
            if request_id is not None:
                return self._server_request(message)
            return [], self._notification(str(message["method"]), params or {})
        if request_id is not None:
            return self._response(message)
        return [], self._garbage(line)

    def _garbage(self, line: str) -> list[CodexEvent]:
        # Not a failure by itself (the answer may still come whole), but the first such line
        # explains a run that then ends without its turn.
        text = line.strip()[:300]
        self._first_garbage = self._first_garbage or text
        return [Notice("garbage", text)]

    def _response(self, message: dict[str, Any]) -> tuple[list[dict[str, Any]], list[CodexEvent]]:
        method = self._pending.pop(message["id"], None)
        error = message.get("error")
        if error is not None:
            if method == "turn/interrupt":
                return [], [Notice("interrupt", str(error))]
            detail = _error_text(error)
            # Its reason quotes Codex's config (a broken config.toml, secrets and all) as often
            # as anything the client sent: the log has it, the client the proxy's words.
            return [], self._fail(f"Codex app-server refused {method}; its reason is in the "
                                  "proxy's log.", f"Codex's reason: {detail}")
        result = message.get("result")
        result = result if isinstance(result, dict) else {}
        if method == "initialize" and self.phase is Phase.INITIALIZING:
            self._advance(Step.INITIALIZED)
            return [INITIALIZED, self._thread_resume()], []
        if method == "thread/resume" and self.phase is Phase.OPENING_THREAD:
            self.thread_id = _get(result, "thread", "id")
            if not self.thread_id:
                return [], self._fail("Codex app-server resumed no thread.")
            self._advance(Step.THREAD_OPENED)
            return [self._turn_start()], []
        if method == "turn/start":
            self._turn_started(_get(result, "turn", "id"))
        return [], []

    def _turn_started(self, turn_id: Any) -> None:
        # The turn's id comes with `turn/started` or with `turn/start`'s result, whichever
        # arrives first.
        if self.phase is Phase.STARTING_TURN and isinstance(turn_id, str) and turn_id:
            self.turn_id = turn_id
            self._advance(Step.TURN_STARTED)

    def _server_request(
        self, message: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[CodexEvent]]:
        method, params = message["method"], message.get("params") or {}
        if method == "item/tool/call":
            # The client gets the call; its result arrives with the client's next request,
            # never on this child, so the request is left unanswered here. The call itself is
            # handed over from the rollout, where the model's exact text is.
            call_id = str(params.get("callId", ""))
            self._requested_calls.setdefault(call_id, (str(params.get("tool", "")),
                                                       params.get("arguments")))
            return [], []
        # Approvals cannot come (approvalPolicy is never); anything else is not ours to serve.
        reply = {"id": message["id"], "error": {"code": METHOD_NOT_FOUND,
                                                "message": f"{method} is not supported"}}
        return [reply], [Notice("server_request", method)]

    def _notification(self, method: str, params: dict[str, Any]) -> list[CodexEvent]:
        if method == "turn/started":
            self._turn_started(_get(params, "turn", "id"))
            return []
        if method == "item/agentMessage/delta":
            return [MessageDelta(str(params.get("itemId", "")), str(params.get("delta", "")))]
        if method == "item/reasoning/summaryTextDelta":
            return [ReasoningDelta(_summary_key(params.get("itemId"), params.get("summaryIndex")),
                                   str(params.get("delta", "")))]
        if method == "item/completed":
            return self._item(params.get("item"))
        if method == "thread/tokenUsage/updated":
            # One turn per thread, so the thread's total is the turn's.
            self._usage = parse_usage(_get(params, "tokenUsage", "total"))
            return []
        if method == "error":
            message = str(_get(params, "error", "message") or "")
            if params.get("willRetry"):
                return [Notice("retry", message)]
            self._last_error = message or self._last_error
            self._last_error_info = _get(params, "error", "codexErrorInfo")
            return [Notice("error", message)]
        if method == "account/rateLimits/updated":
            return [PlanLimitsUpdated(params.get("rateLimits"))]
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

    # -- the rollout file ---------------------------------------------------------------------

    def feed_rollout(self, line: str) -> list[CodexEvent]:
        """A line Codex appended to the thread's rollout file, while `reading_rollout`: the
        model's calls to the client's tools, then the end of its response."""
        if self.finished:
            return []
        try:
            record = json.loads(line)
        except ValueError:
            return []  # a line still being written, or not ours to read
        payload = record.get("payload") if isinstance(record, dict) else None
        if not isinstance(payload, dict):
            return []
        if record.get("type") == "response_item" and payload.get("type") == "function_call":
            name, call_id = payload.get("name"), str(payload.get("call_id", ""))
            if name not in {tool.name for tool in self.plan.tools}:
                return []  # not one of the client's tools
            arguments = payload.get("arguments")
            return self._hand_over(call_id, str(name), arguments if isinstance(arguments, str)
                                   else json.dumps(arguments, ensure_ascii=False))
        if record.get("type") == "token_usage_record" and self._calls_handed_over:
            return [ResponseCompleted(parse_usage(payload.get("usage")))]
        return []

    def rollout_overdue(self) -> list[CodexEvent]:
        """The rollout did not say in time that the response ended: hand over the calls as
        `item/tool/call` gave them (arguments re-serialised) and end the answer there."""
        if self.finished or not self._requested_calls:
            return []
        events: list[CodexEvent] = []
        for call_id, (name, arguments) in self._requested_calls.items():
            events += self._hand_over(call_id, name, json.dumps(
                arguments if arguments is not None else {}, ensure_ascii=False,
                separators=(",", ":")))
        return [*events, ResponseCompleted(self._usage)]

    def _hand_over(self, call_id: str, name: str, arguments: str) -> list[CodexEvent]:
        if call_id in self._calls_handed_over:
            return []
        self._calls_handed_over.add(call_id)
        client_name = next((tool.client_name for tool in self.plan.tools
                            if tool.name == name and tool.client_name), name)
        return [ToolCallRequested(call_id, client_name, arguments)]

    def _turn_completed(self, turn: dict[str, Any]) -> list[CodexEvent]:
        if self.finished:
            return []
        # A turn that ends in a phase that did not expect it (it never said it started) has
        # ended all the same.
        ending = Step.TURN_ENDED if (self.phase, Step.TURN_ENDED) in TRANSITIONS else Step.FAILED
        self._advance(ending)
        status = turn.get("status")
        if status == "completed":
            return [TurnCompleted(self._usage)]
        message = _get(turn, "error", "message") or self._last_error
        error_info = _get(turn, "error", "codexErrorInfo") or self._last_error_info
        if status == "interrupted":
            message = message or "The Codex turn was interrupted."
        return [failure(str(message or f"The Codex turn ended with status {status!r}."),
                        error_info=error_info)]

    def _fail(self, message: str, log_only: str = "", error_info: Any = None
              ) -> list[CodexEvent]:
        if self.finished:
            return []
        self._advance(Step.FAILED)
        return [failure(message, log_only, error_info)]

    def finish(self, returncode: int | None, stderr_tail: str) -> list[CodexEvent]:
        """Any phase: the process ended (its stdout closed). Before the turn's end, that is a
        failure, explained by Codex's last error; its stderr, or output that was not JSON, go
        to the log only."""
        if self.finished:
            return []
        head = f"Codex app-server exited with status {returncode} without finishing the turn"
        if self._last_error:
            return self._fail(f"{head}: {self._last_error}", error_output(stderr_tail),
                              self._last_error_info)
        if self._first_garbage is not None:
            return self._fail(f"{head}: it printed output that is not JSON; the proxy's log has "
                              "it.", f"The first such line: {self._first_garbage!r}\n"
                              + error_output(stderr_tail))
        return self._fail(head + see_the_log(bool(stderr_tail.strip())),
                          error_output(stderr_tail))

    def give_up(self, seconds: float) -> list[CodexEvent]:
        """Any phase that awaits an answer: Codex did not give it within `seconds`. The
        conversation has failed; the driver stops the child."""
        awaited = self.awaiting
        if awaited is None or self.finished:
            return []
        return self._fail(f"Codex app-server did not answer {awaited} within {seconds:g} s.")


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
