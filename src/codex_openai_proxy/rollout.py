"""A Codex rollout file for a conversation, and the lines Codex appends to it (pure).

Codex sends a thread's id upstream as its `prompt_cache_key`, and `thread/start` always makes a
new id. `thread/resume` keeps the id of the rollout file it resumes, so the proxy writes one for
the conversation's own id (`native_history.conversation_id`) in the child's Codex home, then
resumes it: every request of one conversation reaches the backend under one cache key.

What codex-cli 0.169.0 needs of the file (each line a JSON object with `timestamp` and `type`):

* `session_meta`: `id`, `timestamp`, `cwd`, `originator`, `cli_version`, `model_provider`
  (the user's, as Codex would record it; a home with any state refuses a thread without
  one, and a warm spare's home has); `base_instructions`
  (the client's instructions; without it Codex's own system prompt comes back) and
  `dynamic_tools` (a resumed thread takes its tools from here only).
* `turn_context`: `cwd`, `approval_policy`, `sandbox_policy`, `model` (else the line is
  ignored) and `multi_agent_version: "disabled"` (else Codex's multi-agent tools come back).
* `response_item` lines: the conversation's history, replayed upstream verbatim and in order.

The path is fixed per id (`sessions/2020/01/01/rollout-2020-01-01T00-00-00-<id>.jsonl`): Codex
finds a thread's file by its id, and a home that has seen the id remembers the path.

While the turn runs, Codex appends what happens; the proxy reads two kinds of lines back (see
`AppServerSession.feed_rollout`): the model's `function_call`s, with their arguments exactly as
the model wrote them, and the `token_usage_record` that marks the end of a model response. A
resumed thread sends neither as a notification.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

ROLLOUT_DIR = "sessions/2020/01/01"
#: Any value works for Codex; the proxy names itself.
ORIGINATOR = "codex-openai-proxy"


def rollout_path(conversation_id: str) -> str:
    """The file's path, relative to the Codex home."""
    return f"{ROLLOUT_DIR}/rollout-2020-01-01T00-00-00-{conversation_id}.jsonl"


def rollout_text(
    conversation_id: str,
    *,
    timestamp: str,
    cwd: str,
    model: str | None,
    model_provider: str,
    instructions: str,
    dynamic_tools: Sequence[dict[str, Any]],
    history: Sequence[dict[str, Any]],
    cli_version: str,
) -> str:
    """The whole file, one JSON object per line. `timestamp` is ISO 8601 (`...Z`)."""
    lines: list[dict[str, Any]] = [
        {"timestamp": timestamp, "type": "session_meta", "payload": {
            "id": conversation_id, "timestamp": timestamp, "cwd": cwd,
            "originator": ORIGINATOR, "cli_version": cli_version,
            # A home that has seen any thread (a warm spare's) refuses one without it.
            "model_provider": model_provider,
            "base_instructions": {"text": instructions},
            "dynamic_tools": list(dynamic_tools)}},
        {"timestamp": timestamp, "type": "turn_context", "payload": {
            "cwd": cwd, "approval_policy": "never", "sandbox_policy": {"type": "read-only"},
            # Codex needs a model here; the one thread/resume asks for is the one it runs.
            "model": model or "", "multi_agent_version": "disabled"}},
    ]
    lines += [{"timestamp": timestamp, "type": "response_item", "payload": item}
              for item in history]
    return "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
                   for line in lines)
