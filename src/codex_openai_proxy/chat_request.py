"""Validation of a Chat Completions request body into a `ChatRequest` (pure, no I/O).

Each rejection is a 400 whose `param` names the exact field in OpenAI's notation
(`messages[2].content[0].image_url.url`), so a client developer can find the mistake at once.
Knobs Codex cannot honour (temperature, top_p, penalties, max_tokens, ...) are accepted and
ignored: clients send them by default and refusing them would break every client.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ApiError, invalid

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = ("system", "developer", "user", "assistant", "tool")

#: Every reasoning effort any Codex build is known to accept; a model's own list (from the
#: catalog) narrows this further where the model is known.
KNOWN_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max", "ultra")

IMAGE_MEDIA_TYPES = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
}

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^,;]*)*),(?P<data>.*)$",
                       re.DOTALL)


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    """An inline image, already decoded; the runner writes it into the request's scratch dir."""

    media_type: str
    data: bytes
    detail: str = "auto"  # OpenAI's image_url.detail: auto, low or high

    @property
    def extension(self) -> str:
        return IMAGE_MEDIA_TYPES[self.media_type]


Part = TextPart | ImagePart


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON text, exactly as the model produced it


@dataclass(frozen=True)
class Message:
    role: Role
    parts: tuple[Part, ...] = ()
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.parts if isinstance(part, TextPart))

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(part for part in self.parts if isinstance(part, ImagePart))


@dataclass(frozen=True)
class FunctionTool:
    name: str
    description: str
    parameters: dict[str, Any]
    strict: bool = False


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    stream: bool = False
    include_usage: bool = False
    reasoning_effort: str | None = None
    tools: tuple[FunctionTool, ...] = ()
    #: "auto", "none", "required", or "function" with `forced_tool` naming the one allowed tool.
    tool_choice: Literal["auto", "none", "required", "function"] = "auto"
    forced_tool: str | None = None
    parallel_tool_calls: bool = True
    #: The Codex model to run when it differs from `model`, the id the client asked for and
    #: is answered with (an effort variant such as gpt-5.5:high runs gpt-5.5).
    codex_model: str | None = None
    #: `response_format`'s JSON schema: the answer must be JSON that follows it.
    output_schema: dict[str, Any] | None = None

    @property
    def offered_tools(self) -> tuple[FunctionTool, ...]:
        """The tools the model may call, after `tool_choice` has had its say."""
        if self.tool_choice == "none":
            return ()
        if self.tool_choice == "function":
            return tuple(tool for tool in self.tools if tool.name == self.forced_tool)
        return self.tools

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(image for message in self.messages for image in message.images)

    @property
    def codex_model_arg(self) -> str:
        """The model Codex is told to run."""
        return self.codex_model or self.model


def parse_chat_request(body: Any, *, default_model: str, max_image_bytes: int) -> ChatRequest:
    """Check a decoded JSON body and build the request, or raise a 400 `ApiError`."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", None)

    model = body.get("model")
    if model is None:
        model = default_model
    elif not isinstance(model, str) or not model.strip():
        raise invalid("'model' must be a non-empty string.", "model")

    stream = _optional_bool(body, "stream", "stream", default=False)
    include_usage = False
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise invalid("'stream_options' must be an object.", "stream_options")
        include_usage = _optional_bool(
            stream_options, "include_usage", "stream_options.include_usage", default=False
        )

    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise invalid("Only n=1 is supported: Codex produces one answer per request.", "n")
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise invalid(
            "'functions' and 'function_call' are deprecated and not supported; send 'tools' "
            "and 'tool_choice' instead.",
            "functions" if body.get("functions") is not None else "function_call",
        )

    tools = _parse_tools(body.get("tools"))
    tool_choice, forced_tool = _parse_tool_choice(body.get("tool_choice"), tools)
    parallel_tool_calls = _optional_bool(
        body, "parallel_tool_calls", "parallel_tool_calls", default=True
    )

    messages = _parse_messages(body.get("messages"), max_image_bytes)
    output_schema = _parse_response_format(body.get("response_format"))
    return ChatRequest(
        model=model.strip(),
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        reasoning_effort=_parse_effort(body),
        tools=tools,
        tool_choice=tool_choice,
        forced_tool=forced_tool,
        parallel_tool_calls=parallel_tool_calls,
        output_schema=output_schema,
    )


def _parse_response_format(raw: Any) -> dict[str, Any] | None:
    """The schema of `{"type": "json_schema", "json_schema": {"schema": ...}}`; None for
    `text`, and for `json_object`, which Codex has no mode for (Codex sends every output schema
    as a strict one, and strict mode cannot say "any object"): the client's own prompt, which
    must ask for JSON in that mode anyway, is what asks for it."""
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise invalid("'response_format.type' must be one of text, json_object, json_schema.",
                      "response_format.type")
    if kind != "json_schema":
        return None
    spec = raw.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise invalid("'response_format.json_schema.schema' must be a JSON Schema object.",
                      "response_format.json_schema.schema")
    return schema


def _optional_bool(container: dict[str, Any], key: str, param: str, *, default: bool) -> bool:
    value = container.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"'{param}' must be a boolean.", param)
    return value


def _parse_effort(body: dict[str, Any]) -> str | None:
    """`reasoning_effort` (Chat Completions) or `reasoning.effort` (Responses style)."""
    effort, param = body.get("reasoning_effort"), "reasoning_effort"
    reasoning = body.get("reasoning")
    if effort is None and reasoning is not None:
        if not isinstance(reasoning, dict):
            raise invalid("'reasoning' must be an object.", "reasoning")
        effort, param = reasoning.get("effort"), "reasoning.effort"
    if effort is None:
        return None
    if not isinstance(effort, str) or effort.strip().lower() not in KNOWN_EFFORTS:
        raise invalid(
            f"'{param}' must be one of {', '.join(KNOWN_EFFORTS)}; got {effort!r}.",
            param,
            "invalid_reasoning_effort",
        )
    return effort.strip().lower()


def _parse_messages(raw: Any, max_image_bytes: int) -> tuple[Message, ...]:
    if raw is None:
        raise invalid("'messages' is required.", "messages")
    if not isinstance(raw, list) or not raw:
        raise invalid("'messages' must be a non-empty array.", "messages")
    return tuple(
        _parse_message(item, f"messages[{index}]", max_image_bytes)
        for index, item in enumerate(raw)
    )


def _parse_message(raw: Any, where: str, max_image_bytes: int) -> Message:
    if not isinstance(raw, dict):
        raise invalid(f"'{where}' must be an object with 'role' and 'content'.", where)
    role = raw.get("role")
    if role not in ROLES:
        raise invalid(
            f"'{where}.role' must be one of {', '.join(ROLES)}; got {role!r}.", f"{where}.role"
        )
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise invalid(f"'{where}.name' must be a string.", f"{where}.name")

    tool_calls: tuple[ToolCall, ...] = ()
    if role == "assistant" and raw.get("tool_calls") is not None:
        tool_calls = _parse_tool_calls(raw["tool_calls"], f"{where}.tool_calls")

    tool_call_id = None
    if role == "tool":
        tool_call_id = raw.get("tool_call_id")
        if not isinstance(tool_call_id, str) or not tool_call_id:
            raise invalid(
                f"'{where}.tool_call_id' is required for a tool message.", f"{where}.tool_call_id"
            )

    content = raw.get("content")
    if content is None:
        if role == "assistant" and tool_calls:
            return Message(role, (), name, tool_calls)
        raise invalid(f"'{where}.content' is required for a {role} message.", f"{where}.content")
    allowed = ("text", "image_url") if role == "user" else ("text",)
    if role == "assistant":
        allowed = ("text", "refusal")
    parts = _parse_content(content, f"{where}.content", allowed, max_image_bytes)
    return Message(role, parts, name, tool_calls, tool_call_id)


def _parse_content(
    content: Any, where: str, allowed: tuple[str, ...], max_image_bytes: int
) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (TextPart(content),)
    if not isinstance(content, list):
        raise invalid(f"'{where}' must be a string or an array of content parts.", where)
    parts: list[Part] = []
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise invalid(
                f"'{at}.type' must be one of {', '.join(allowed)} here; got {kind!r}.",
                f"{at}.type",
            )
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise invalid(f"'{at}.{kind}' must be a string.", f"{at}.{kind}")
            parts.append(TextPart(text))
        else:
            parts.append(_parse_image(part.get("image_url"), f"{at}.image_url", max_image_bytes))
    return tuple(parts)


def _parse_image(raw: Any, where: str, max_bytes: int) -> ImagePart:
    url = raw.get("url") if isinstance(raw, dict) else None
    if not isinstance(url, str):
        raise invalid(f"'{where}.url' must be a string.", f"{where}.url")
    if not url.startswith("data:"):
        raise invalid(
            "Only inline images are accepted: send the image as a data: URL "
            "(data:image/png;base64,...). The proxy never fetches URLs.",
            f"{where}.url",
            "image_url_not_supported",
        )
    match = _DATA_URL.match(url)
    media_type = match["type"].lower() if match else ""
    if not match or media_type not in IMAGE_MEDIA_TYPES:
        raise invalid(
            "Inline images must be base64 data: URLs of type image/png, image/jpeg, image/gif "
            "or image/webp.",
            f"{where}.url",
            "invalid_image",
        )
    if ";base64" not in match["params"].lower():
        raise invalid("Inline images must be base64-encoded (;base64,).", f"{where}.url",
                      "invalid_image")
    encoded = match["data"]
    # Refuse before decoding: base64 is 4/3 of the data, so this bounds the work done.
    if len(encoded) * 3 // 4 > max_bytes + 3:
        raise _image_too_large(where, max_bytes)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("The image's base64 data is invalid.", f"{where}.url",
                      "invalid_image") from None
    if len(data) > max_bytes:
        raise _image_too_large(where, max_bytes)
    # Codex silently drops an image it cannot decode, so a broken one would vanish from the
    # conversation without a word. The bytes decide the type; a mislabelled data: URL is fine.
    sniffed = sniff_image_type(data)
    if sniffed is None:
        raise invalid("The image data is not a PNG, JPEG, GIF or WebP image.", f"{where}.url",
                      "invalid_image")
    detail = raw.get("detail") or "auto"
    if detail not in ("auto", "low", "high"):
        raise invalid("'image_url.detail' must be auto, low or high.", f"{where}.detail")
    return ImagePart(sniffed, data, detail)


def sniff_image_type(data: bytes) -> str | None:
    """The media type the image's signature says, for the formats Codex reads."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _image_too_large(where: str, max_bytes: int) -> ApiError:
    return invalid(
        f"The image is larger than the {max_bytes / 1024 / 1024:g} MB allowed "
        "(PROXY_MAX_IMAGE_MB).",
        f"{where}.url",
        "image_too_large",
    )


def _parse_tool_calls(raw: Any, where: str) -> tuple[ToolCall, ...]:
    if not isinstance(raw, list):
        raise invalid(f"'{where}' must be an array.", where)
    calls = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict):
            raise invalid(f"'{at}.function' must be an object.", f"{at}.function")
        call_id, name = item.get("id"), function.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise invalid(f"'{at}.id' must be a non-empty string.", f"{at}.id")
        if not isinstance(name, str) or not name:
            raise invalid(f"'{at}.function.name' must be a non-empty string.",
                          f"{at}.function.name")
        arguments = function.get("arguments", "")
        if isinstance(arguments, dict | list):
            # Some clients send the parsed object; the model only ever sees JSON text.
            arguments = json.dumps(arguments, ensure_ascii=False)
        if not isinstance(arguments, str):
            raise invalid(f"'{at}.function.arguments' must be a JSON string.",
                          f"{at}.function.arguments")
        calls.append(ToolCall(call_id, name, arguments))
    return tuple(calls)


def _parse_tools(raw: Any) -> tuple[FunctionTool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid("'tools' must be an array of function tools.", "tools")
    tools: list[FunctionTool] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        at = f"tools[{index}]"
        if not isinstance(item, dict) or item.get("type") != "function":
            raise invalid(f"'{at}.type' must be 'function'.", f"{at}.type")
        function = item.get("function")
        if not isinstance(function, dict):
            raise invalid(f"'{at}.function' must be an object.", f"{at}.function")
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise invalid(
                f"'{at}.function.name' must be 1-64 letters, digits, '_' or '-'; got {name!r}.",
                f"{at}.function.name",
            )
        if name in seen:
            raise invalid(f"Tool name {name!r} is defined twice.", f"{at}.function.name")
        seen.add(name)
        description = function.get("description", "")
        if description is None:
            description = ""
        if not isinstance(description, str):
            raise invalid(f"'{at}.function.description' must be a string.",
                          f"{at}.function.description")
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise invalid(f"'{at}.function.parameters' must be a JSON Schema object.",
                          f"{at}.function.parameters")
        strict = function.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise invalid(f"'{at}.function.strict' must be a boolean.", f"{at}.function.strict")
        tools.append(FunctionTool(name, description, parameters, bool(strict)))
    return tuple(tools)


def _parse_tool_choice(
    raw: Any, tools: tuple[FunctionTool, ...]
) -> tuple[Literal["auto", "none", "required", "function"], str | None]:
    if raw is None or raw == "auto":
        return "auto", None
    if raw == "none":
        return "none", None
    if raw == "required":
        if not tools:
            raise invalid("tool_choice 'required' needs 'tools'.", "tool_choice")
        return "required", None
    if isinstance(raw, dict) and raw.get("type") == "function":
        function = raw.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise invalid("'tool_choice.function.name' must be a string.",
                          "tool_choice.function.name")
        if name not in {tool.name for tool in tools}:
            raise invalid(f"tool_choice names {name!r}, which is not in 'tools'.",
                          "tool_choice.function.name")
        return "function", name
    raise invalid(
        "'tool_choice' must be 'auto', 'none', 'required' or "
        '{"type": "function", "function": {"name": ...}}.',
        "tool_choice",
    )
