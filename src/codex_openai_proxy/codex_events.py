"""What a Codex run says, in terms both engines share (pure).

`codex exec --json` and `codex app-server` describe a turn differently; their protocol modules
translate into these events so that everything downstream (the answer policy, the OpenAI wire
format, the logs) is written once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Literal


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0


def parse_usage(raw: Any) -> Usage | None:
    """Codex's token counts, as exec (`input_tokens`) or app-server (`inputTokens`) spells them.

    Anything that is not a positive whole number counts as 0, so a malformed count never
    fails an answer that is otherwise good.
    """
    if not isinstance(raw, dict):
        return None

    def count(name: str) -> int:
        head, *rest = name.split("_")
        value = raw.get(name, raw.get(head + "".join(word.title() for word in rest)))
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    return Usage(**{field.name: count(field.name) for field in fields(Usage)})


@dataclass(frozen=True)
class MessageDelta:
    """Part of an agent message, as the model produces it (app-server only)."""

    item_id: str
    text: str


@dataclass(frozen=True)
class MessageDone:
    """An agent message, whole."""

    item_id: str
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    item_id: str
    text: str


@dataclass(frozen=True)
class ReasoningDone:
    item_id: str
    text: str


@dataclass(frozen=True)
class ToolCallRequested:
    """The model called one of the client's tools; the proxy hands the call to the client."""

    call_id: str
    name: str
    arguments: str  # JSON text


@dataclass(frozen=True)
class ResponseCompleted:
    """One model response within the turn has ended (app-server raw events only).

    A turn that calls client tools never completes on its own (Codex waits for the results,
    which only the client can give), so the end of the model's response is what ends the
    answer, and its usage is the answer's usage.
    """

    usage: Usage | None


@dataclass(frozen=True)
class TurnCompleted:
    usage: Usage | None


FailureKind = Literal["codex", "auth"]


@dataclass(frozen=True)
class TurnFailed:
    message: str
    kind: FailureKind = "codex"


@dataclass(frozen=True)
class Notice:
    """Operational output (commands, file changes, retries, warnings): logged, never sent."""

    kind: str
    detail: str


CodexEvent = (
    MessageDelta
    | MessageDone
    | ReasoningDelta
    | ReasoningDone
    | ToolCallRequested
    | ResponseCompleted
    | TurnCompleted
    | TurnFailed
    | Notice
)

_AUTH_FAILURE = re.compile(
    r"\b401\b|unauthori[sz]ed|not logged in|login required|please log ?in|"
    r"invalid api key|incorrect api key|token (?:has )?expired|refresh token",
    re.IGNORECASE,
)

LOGIN_HINT = "Codex is not logged in or its login has expired: run `codex login` and try again."


def failure(message: str) -> TurnFailed:
    """A failure, recognised as an authentication problem where Codex's message says so."""
    message = message.strip() or "Codex failed without a message."
    if _AUTH_FAILURE.search(message):
        return TurnFailed(f"{LOGIN_HINT} (Codex said: {message})", "auth")
    return TurnFailed(message, "codex")
