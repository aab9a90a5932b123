"""What the client is told, decided from a run's `CodexEvent`s (pure).

This is the answer policy, apart from any wire format: which agent messages become content
(`incremental`: each as it comes, a blank line between them; `final`: only the last), how
deltas and whole messages are reconciled so no text is sent twice, when tool calls end the
answer, and how failures are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from . import errors
from .codex_events import (
    CodexEvent,
    MessageDelta,
    MessageDone,
    ReasoningDelta,
    ReasoningDone,
    ResponseCompleted,
    ToolCallRequested,
    TurnCompleted,
    TurnFailed,
    Usage,
)
from .errors import ApiError

MESSAGE_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Content:
    text: str


@dataclass(frozen=True)
class Reasoning:
    text: str


@dataclass(frozen=True)
class ToolCallOut:
    index: int
    call: ToolCallRequested


@dataclass(frozen=True)
class Finished:
    finish_reason: Literal["stop", "tool_calls"]
    usage: Usage | None


@dataclass(frozen=True)
class Failed:
    error: ApiError


Output = Content | Reasoning | ToolCallOut | Finished | Failed


def codex_failure_error(event: TurnFailed) -> ApiError:
    """A failed turn is Codex's (or the upstream's) failure: a 502, never retried; or a limit
    reached upstream: a 429, saying which limit and when it resets."""
    if event.kind in ("usage_limit", "rate_limit"):
        return errors.limit_reached(event.message, usage_limit=event.kind == "usage_limit",
                                    resets_in_s=event.resets_in_s)
    return errors.codex_failed(event.message, not_logged_in=event.kind == "auth")


@dataclass
class _TextChannel:
    """Text that arrives as deltas and/or whole items, sent once, items a blank line apart."""

    sent_by_item: dict[str, str] = field(default_factory=dict)
    current_item: str | None = None

    def delta(self, item_id: str, text: str) -> str:
        if not text:
            return ""
        prefix = self._switch_to(item_id)
        self.sent_by_item[item_id] = self.sent_by_item.get(item_id, "") + text
        return prefix + text

    def done(self, item_id: str, text: str) -> str:
        sent = self.sent_by_item.get(item_id)
        if sent is None:
            return self.delta(item_id, text)
        # The whole item repeats what its deltas said; send only what they missed, if anything.
        rest = text[len(sent):] if text.startswith(sent) else ""
        return self.delta(item_id, rest) if rest else ""

    def _switch_to(self, item_id: str) -> str:
        if item_id == self.current_item:
            return ""
        had_output = any(self.sent_by_item.values())
        self.current_item = item_id
        return MESSAGE_SEPARATOR if had_output else ""


class AnswerAssembler:
    def __init__(
        self,
        *,
        stream_mode: Literal["incremental", "final"] = "incremental",
        tool_required: bool = False,
        parallel_tool_calls: bool = True,
    ) -> None:
        self._stream_mode = stream_mode
        self._tool_required = tool_required
        self._parallel_tool_calls = parallel_tool_calls
        self._content = _TextChannel()
        self._reasoning = _TextChannel()
        self._last_message = ""
        self._tool_calls = 0
        # Under a required tool choice, text is held back until a call makes it part of a
        # valid answer: a text-only answer must come out as an error, not as streamed text.
        self._held: list[Output] = []
        self.ended = False

    def feed(self, event: CodexEvent) -> list[Output]:
        outputs = self._feed(event)
        if not self._tool_required or self._tool_calls:
            return outputs
        self._held += [o for o in outputs if isinstance(o, Content)]
        return [o for o in outputs if not isinstance(o, Content)]

    def _feed(self, event: CodexEvent) -> list[Output]:
        if self.ended:
            return []
        match event:
            case MessageDelta(item_id, text) if self._stream_mode == "incremental":
                return _content(self._content.delta(item_id, text))
            case MessageDone(item_id, text):
                self._last_message = text
                if self._stream_mode == "incremental":
                    return _content(self._content.done(item_id, text))
            case ReasoningDelta(item_id, text):
                return _reasoning(self._reasoning.delta(item_id, text))
            case ReasoningDone(item_id, text):
                return _reasoning(self._reasoning.done(item_id, text))
            case ToolCallRequested():
                if self._tool_calls and not self._parallel_tool_calls:
                    return []  # the client asked for one call per answer: the first
                self._tool_calls += 1
                held, self._held = self._held, []
                return [*held, ToolCallOut(self._tool_calls - 1, event)]
            case ResponseCompleted(usage) if self._tool_calls:
                # The model's response asked for the client's tools: that is the answer.
                return self._complete(usage)
            case TurnCompleted(usage):
                return self._complete(usage)
            case TurnFailed():
                self.ended = True
                return [Failed(codex_failure_error(event))]
        return []

    def _complete(self, usage: Usage | None) -> list[Output]:
        self.ended = True
        outputs: list[Output] = []
        if self._stream_mode == "final" and self._last_message:
            outputs.append(Content(self._last_message))
        if self._tool_calls:
            return [*outputs, Finished("tool_calls", usage)]
        if self._tool_required:
            return [Failed(errors.tool_call_required())]
        outputs.append(Finished("stop", usage))
        return outputs


def _content(text: str) -> list[Output]:
    return [Content(text)] if text else []


def _reasoning(text: str) -> list[Output]:
    return [Reasoning(text)] if text else []
