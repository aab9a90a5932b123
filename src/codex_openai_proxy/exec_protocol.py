"""Reading `codex exec` output into `CodexEvent`s (pure: lines in, events out).

Two readers share one shape, `feed(line)` then `finish(returncode, stderr_tail)`:
`ExecJsonReader` for `--json` (JSONL events, codex-cli 0.169.0), and `PlainOutputReader` for
builds without `--json`, whose stdout is the final message mixed, in older builds, with
operational lines that must not reach the client.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .codex_events import (
    CodexEvent,
    MessageDone,
    Notice,
    ReasoningDone,
    TurnCompleted,
    error_output,
    failure,
    parse_usage,
    see_the_log,
)


class ExecJsonReader:
    """The `codex exec --json` event stream.

    A line that is not JSON is noted and skipped rather than failing the run: the answer may
    still arrive whole. Only a run that ends without `turn.completed` is a failure, and then
    the garbage, Codex's last error notice or its stderr explains why (the garbage and the
    stderr to the log only: they are not Codex's words to the client).
    """

    def __init__(self) -> None:
        self.finished = False
        self._last_error: str | None = None
        self._first_garbage: str | None = None

    def feed(self, line: str) -> list[CodexEvent]:
        if self.finished or not line.strip():
            return []
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            if self._first_garbage is None:
                self._first_garbage = line.strip()[:300]
            return [Notice("garbage", line.strip()[:300])]
        return self._translate(event)

    def _translate(self, event: dict[str, Any]) -> list[CodexEvent]:
        kind = event["type"]
        if kind == "item.completed":
            return self._item(event.get("item"))
        if kind == "turn.completed":
            self.finished = True
            return [TurnCompleted(parse_usage(event.get("usage")))]
        if kind == "turn.failed":
            self.finished = True
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            return [failure(str(message or self._last_error or "Codex reported a failed turn."))]
        if kind == "error":
            # Top-level errors are retry notices ("Reconnecting... 2/5"); the turn goes on.
            self._last_error = str(event.get("message", ""))
            return [Notice("retry", self._last_error)]
        return [Notice(kind, "")]

    def _item(self, item: Any) -> list[CodexEvent]:
        if not isinstance(item, dict):
            return []
        item_type, item_id = item.get("type"), str(item.get("id", ""))
        if item_type == "agent_message":
            return [MessageDone(item_id, str(item.get("text", "")))]
        if item_type == "reasoning":
            return [ReasoningDone(item_id, str(item.get("text", "")))]
        if item_type == "error":
            return [Notice("warning", str(item.get("message", "")))]
        return [Notice(str(item_type), _describe(item))]

    def finish(self, returncode: int | None, stderr_tail: str) -> list[CodexEvent]:
        """The process has ended; a turn it left unfinished becomes a failure."""
        if self.finished:
            return []
        self.finished = True
        if self._first_garbage is not None:
            return [failure("Codex printed output that is not JSON; the proxy's log has it.",
                            f"The first such line: {self._first_garbage!r}\n"
                            + error_output(stderr_tail))]
        if self._last_error:
            return [failure(self._last_error, error_output(stderr_tail))]
        return [_exit_failure(returncode, stderr_tail)]


def _exit_failure(returncode: int | None, stderr_tail: str) -> CodexEvent:
    if returncode == 0:
        head = "Codex exited without finishing the turn"
    else:
        head = f"Codex exited with status {returncode} before finishing the turn"
    return failure(head + see_the_log(bool(stderr_tail.strip())), error_output(stderr_tail))


def _describe(item: dict[str, Any]) -> str:
    for key in ("command", "query", "tool", "text", "message"):
        if isinstance(item.get(key), str):
            return item[key][:200]
    return ""


# Operational lines older `codex exec` builds printed on stdout beside the answer.
_OPERATIONAL_LINE = re.compile(
    r"""^(?:
        \[\d{4}-\d\d-\d\dT[^\]]*\].*             # timestamped headers: "[2025-..] exec ls in /x"
      | \d{4}-\d\d-\d\dT\S+\s+(?:TRACE|DEBUG|INFO|WARN|ERROR)\b.*   # runner (tracing) logs
      | OpenAI\ Codex\ v.*                        # banner
      | -{4,}                                     # banner rules
      | (?:workdir|model|provider|approval|sandbox|reasoning\ effort|reasoning\ summaries
          |session\ id):\ .*                      # banner settings
      | tokens\ used:?\ .*                        # usage footer
      | diff\ --git\ .* | index\ [0-9a-f]+\.\.[0-9a-f]+.* | (?:---|\+\+\+)\ [ab/].* | @@\ .*\ @@.*
    )$""",
    re.VERBOSE,
)
# In those builds the answer followed a "[timestamp] codex" header line.
_ANSWER_HEADER = re.compile(r"^\[\d{4}-\d\d-\d\dT[^\]]*\]\s+codex\s*$")


class PlainOutputReader:
    """Plain mode: stdout is the final message; exit status says whether the turn worked."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def feed(self, line: str) -> list[CodexEvent]:
        if _ANSWER_HEADER.match(line.rstrip("\r\n")):
            self._lines.clear()  # whatever came before the last header was not the answer
        else:
            self._lines.append(line.rstrip("\r\n"))
        return []

    def finish(self, returncode: int | None, stderr_tail: str) -> list[CodexEvent]:
        if returncode != 0:
            return [_exit_failure(returncode, stderr_tail)]
        answer = "\n".join(line for line in self._lines if not _OPERATIONAL_LINE.match(line))
        return [MessageDone("plain", answer.strip("\n")), TurnCompleted(None)]

