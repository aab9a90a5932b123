"""The client's conversation as the model is trained to read it: native Responses items (pure).

The client sends its whole conversation with every request. The app-server engine gives it to
Codex as it is, not as a transcript:

* the leading system and developer messages are the thread's instructions (Codex sends them as
  the first developer message, exactly as written; several are joined by a blank line);
* every other message is a Responses item, in order: a user or assistant `message` with one
  content part per client part (text parts are never glued together; inline images stay
  `input_image`s), a `function_call` for each call an assistant message made (the client's own
  call id, name and arguments), a `function_call_output` for each tool result, and a
  `developer` message for a developer or system message later in the conversation;
* the whole conversation is history, up to and including the last message; the turn itself
  starts with no new input. (A turn's input would get a fresh item id from Codex on every
  request, which would break the property below.)

Each request of one conversation repeats the previous request's messages and adds some, so
its items extend the previous request's items: what the model saw before is a prefix of what it
sees now, which is what the backend's prompt cache needs. `conversation_id` gives every request
of a conversation the same id, and Codex uses that id as the `prompt_cache_key`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .chat_request import ImagePart, Message, TextPart


@dataclass(frozen=True)
class NativeConversation:
    instructions: str  # "" when the client sent none
    items: tuple[dict[str, Any], ...]


def native_conversation(messages: Sequence[Message]) -> NativeConversation:
    leading = 0
    while leading < len(messages) and messages[leading].role in ("system", "developer"):
        leading += 1
    instructions = "\n\n".join(message.text for message in messages[:leading])
    items: list[dict[str, Any]] = []
    for message in messages[leading:]:
        items += message_items(message)
    return NativeConversation(instructions, tuple(items))


def message_items(message: Message) -> list[dict[str, Any]]:
    """The Responses items one client message becomes."""
    if message.role == "tool":
        return [{"type": "function_call_output", "call_id": message.tool_call_id,
                 "output": _tool_output(message)}]
    if message.role == "assistant":
        items: list[dict[str, Any]] = []
        if message.parts:
            items.append({"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": part.text}
                for part in message.parts if isinstance(part, TextPart)]})
        items += [{"type": "function_call", "call_id": call.id, "name": call.name,
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


def conversation_id(messages: Sequence[Message]) -> str:
    """The same id for every request of one conversation, different ones for others.

    A conversation is known by how it starts: its instructions and its first user message
    (which a client like Roo Code never rewrites, unlike later ones, which it may condense).
    The id is UUID-shaped (version 7's bits), the form Codex requires of a thread id.
    """
    conversation = native_conversation(messages)
    first_user = next((m for m in messages if m.role == "user"), None)
    opening = json.dumps([conversation.instructions,
                          message_items(first_user) if first_user else None],
                         ensure_ascii=False, sort_keys=True)
    digest = bytearray(hashlib.sha256(opening.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x70  # version 7
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(digest)))
