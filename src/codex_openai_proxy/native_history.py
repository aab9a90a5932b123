"""The client's conversation as the model is trained to read it: native Responses items (pure).

The client sends its whole conversation with every request. The app-server engine gives it to
Codex as it is, not as a transcript:

* the leading system and developer messages are the thread's instructions (Codex sends them as
  the first developer message, exactly as written; several are joined by a blank line);
* every other message is a Responses item, in order: a user or assistant `message` with one
  content part per client part (text parts are never glued together; inline images stay
  `input_image`s; an assistant's empty text parts are left out, and with them a message of
  nothing else), a `function_call` for each call an assistant message made (the client's own
  call id, name and arguments), a `function_call_output` for each tool result, and a
  `developer` message for a developer or system message later in the conversation;
* the whole conversation is history, up to and including the last message; the turn itself
  starts with no new input. (A turn's input would get a fresh item id from Codex on every
  request, which would break the property below.)

Each request of one conversation repeats the previous request's messages and adds some, so
its items extend the previous request's items: what the model saw before is a prefix of what it
sees now, which is what the backend's prompt cache needs. `conversation_id` gives every request
of a conversation the same id, and Codex uses that id as the `prompt_cache_key`.

Codex keeps two tool names for its own shell tools (`CODEX_HELD_TOOL_NAMES`): a client tool so
named would be left out of the model's tools without a word. `codex_tool_names` gives such a tool
another name for the model, used in the history too; its calls go back under the client's name.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .chat_request import ImagePart, Message, TextPart


@dataclass(frozen=True)
class NativeConversation:
    instructions: str  # "" when the client sent none
    items: tuple[dict[str, Any], ...]


#: Names codex-cli 0.169.0 keeps for its own shell tools, checked against the mock: a dynamic
#: tool so named never reaches the model, even with Codex's shell tools off. The Codex CLI, as a
#: client of /v1/responses, offers an `exec_command` of its own.
CODEX_HELD_TOOL_NAMES = frozenset({"exec_command", "shell_command"})


def codex_tool_names(names: Iterable[str]) -> dict[str, str]:
    """The name the model is offered a client tool by, for each tool whose name Codex holds:
    the name with `_` appended until no other tool has it. Other tools keep their names."""
    names = list(names)
    taken, renamed = set(names), {}
    for name in names:
        if name in CODEX_HELD_TOOL_NAMES:
            alias = name + "_"
            while alias in taken:
                alias += "_"
            taken.add(alias)
            renamed[name] = alias
    return renamed


def native_conversation(messages: Sequence[Message],
                        tool_names: Mapping[str, str] | None = None) -> NativeConversation:
    """The conversation as instructions and items; `tool_names` (from `codex_tool_names`)
    renames the calls of tools the model knows by another name."""
    instructions, rest = _split_instructions(messages)
    items: list[dict[str, Any]] = []
    for message in rest:
        items += message_items(message, tool_names or {})
    return NativeConversation(instructions, tuple(items))


def _split_instructions(messages: Sequence[Message]) -> tuple[str, Sequence[Message]]:
    """The leading system and developer messages' text (the instructions), and the rest."""
    leading = 0
    while leading < len(messages) and messages[leading].role in ("system", "developer"):
        leading += 1
    return "\n\n".join(message.text for message in messages[:leading]), messages[leading:]


def message_items(message: Message,
                  tool_names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The Responses items one client message becomes."""
    if message.role == "tool":
        return [{"type": "function_call_output", "call_id": message.tool_call_id,
                 "output": _tool_output(message)}]
    if message.role == "assistant":
        items: list[dict[str, Any]] = []
        # Empty text is no text: a message rebuilt from a stream (whose first delta is
        # `content: ""`, as OpenAI's is, e.g. by LiteLLM's stream_chunk_builder) would
        # otherwise put an empty message before the model's own calls.
        texts = [part.text for part in message.parts if isinstance(part, TextPart) and part.text]
        if texts:
            items.append({"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": text} for text in texts]})
        renamed = tool_names or {}
        items += [{"type": "function_call", "call_id": call.id,
                   "name": renamed.get(call.name, call.name),
                   "arguments": call.arguments} for call in message.tool_calls]
        return items
    # Codex drops `system` items from the history; a late system message is a developer one.
    role = "user" if message.role == "user" else "developer"
    return [{"type": "message", "role": role,
             "content": [_input_part(part) for part in message.parts]}]


def _input_part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, ImagePart):
        data = base64.b64encode(part.data).decode("ascii")
        return {"type": "input_image", "image_url": f"data:{part.media_type};base64,{data}",
                "detail": part.detail}
    return {"type": "input_text", "text": part.text}


def _tool_output(message: Message) -> str | list[dict[str, Any]]:
    # One text part is the output itself, as most clients send it; several stay apart.
    texts = [part.text for part in message.parts if isinstance(part, TextPart)]
    if len(texts) == 1:
        return texts[0]
    return [{"type": "input_text", "text": text} for text in texts]


def conversation_id(messages: Sequence[Message], cache_key: str | None = None) -> str:
    """The same id for every request of one conversation, different ones for others.

    A conversation is known by the key its client gives it (Responses' `prompt_cache_key`),
    else by how it starts: its instructions and its first user message (which a client like
    Roo Code never rewrites, unlike later ones, which it may condense). The id is UUID-shaped
    (version 7's bits), the form Codex requires of a thread id.
    """
    if cache_key is not None:
        opening = json.dumps(["prompt_cache_key", cache_key], ensure_ascii=False)
    else:
        # Not `native_conversation(messages).instructions`: that would build every item (and
        # encode every image) a second time, for each request.
        instructions, _ = _split_instructions(messages)
        first_user = next((m for m in messages if m.role == "user"), None)
        opening = json.dumps([instructions,
                              message_items(first_user) if first_user else None],
                             ensure_ascii=False, sort_keys=True)
    digest = bytearray(hashlib.sha256(opening.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x70  # version 7
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(digest)))
