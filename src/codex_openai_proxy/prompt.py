"""Rendering a Chat Completions conversation as the one prompt Codex reads (pure).

Codex takes a single user turn per run, so the whole history goes in as a transcript: each
message under a `[role]` header, in order. Tool calls and their results are spelled out (which
tool, which call id, which arguments, what came back) because the model must see its own earlier
calls to continue a tool-using conversation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .chat_request import ImagePart, Message
from .errors import prompt_too_long

TRANSCRIPT_PREAMBLE = (
    "The conversation so far is below, one message per block, each under a [role] header. "
    "Continue it: write the next assistant message, answering the last message."
)


#: Codex's limit on a turn's user input, in characters (Unicode code points, which is what
#: Python's `len` counts): `MAX_USER_INPUT_TEXT_CHARS` in codex-rs, 1 << 20. codex-cli 0.169.0
#: refuses a longer prompt ("Input exceeds the maximum length of 1048576 characters"), on
#: exec's stdin as in app-server's `turn/start`; the system prompt is not counted.
MAX_PROMPT_CHARS = 1_048_576


def check_prompt_length(prompt: str) -> None:
    """Refuse a prompt Codex would refuse, with a 400 the client can act on."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise prompt_too_long(len(prompt), MAX_PROMPT_CHARS)


@dataclass(frozen=True)
class NumberedImage:
    filename: str
    image: ImagePart


def number_images(messages: Sequence[Message]) -> tuple[NumberedImage, ...]:
    """Name every inline image in order; the prompt and the image files use the same names."""
    images = (image for message in messages for image in message.images)
    return tuple(
        NumberedImage(f"image-{index}.{image.extension}", image)
        for index, image in enumerate(images, start=1)
    )


def render_prompt(messages: Sequence[Message]) -> str:
    """The prompt text for a conversation.

    The preamble explaining the transcript is added only when there is a history to explain.
    """
    kept = list(messages)
    tool_names = {call.id: call.name for m in kept for call in m.tool_calls}
    image_names = iter(numbered.filename for numbered in number_images(kept))
    if len(kept) == 1 and kept[0].role == "user" and not kept[0].name:
        # A lone question is just the question: a transcript header would only be noise.
        return _render_body(kept[0], image_names)
    blocks = [_render_message(m, tool_names, image_names) for m in kept]
    if len(blocks) > 1:
        blocks.insert(0, TRANSCRIPT_PREAMBLE)
    return "\n\n".join(blocks)


def render_instructions(messages: Sequence[Message]) -> str:
    """The system and developer messages, joined, for engines that take instructions apart."""
    return "\n\n".join(m.text for m in messages if m.role in ("system", "developer"))


def _render_message(
    message: Message, tool_names: dict[str, str], image_names: Iterator[str]
) -> str:
    if message.role == "tool":
        name = tool_names.get(message.tool_call_id or "", "unknown tool")
        header = f"[tool result of {name}, call id {message.tool_call_id}]"
    else:
        header = f"[{message.role}]" if not message.name else f"[{message.role} {message.name}]"
    lines = [header]
    body = _render_body(message, image_names)
    if body:
        lines.append(body)
    for call in message.tool_calls:
        lines.append(f"[assistant called tool {call.name}, call id {call.id}, arguments:]")
        lines.append(call.arguments)
    return "\n".join(lines)


def _render_body(message: Message, image_names: Iterator[str]) -> str:
    return "".join(
        f"[image {next(image_names)}]" if isinstance(part, ImagePart) else part.text
        for part in message.parts
    )
