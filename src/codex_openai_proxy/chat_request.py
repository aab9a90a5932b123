"""Validation of a Chat Completions request body into a `ChatRequest` (pure, no I/O).

Each rejection is a 400 whose `param` names the exact field in OpenAI's notation
(`messages[2].content[0].image_url.url`), so a client developer can find the mistake at once.
Knobs Codex cannot honour (temperature, top_p, penalties, max_tokens, ...) are accepted and
ignored: clients send them by default and refusing them would break every client.

Whatever would make Codex fail, hang or blow up is refused here, before any child starts:

* JSON Codex cannot read: a JSON-RPC message nested 128 levels or more (codex-cli 0.169.0's
  serde_json limit; the app-server then never answers), integers beyond 64 bits, NaN and
  infinities. Client JSON that reaches Codex (a tool's `parameters`, tool call arguments sent
  as objects) may nest `MAX_JSON_DEPTH` levels, far inside that limit.
* Lone UTF-16 surrogates (`"\\ud800"`), which are no text and cannot be written to a pipe.
* A `model` that is no model name (control characters, spaces, a leading `-` that Codex would
  read as an option, or longer than any model id).
* Images whose header declares more pixels than `InputLimits.max_image_pixels`: Codex decodes
  every image in full, so a small PNG of 30000x30000 pixels costs it gigabytes.
* More messages, parts or images than `InputLimits` allows, so that the proxy's own work on a
  request (rendering the prompt, writing the images) stays small.

The body's bytes are read by `read_chat_request`. A large body is read with the pure-Python
JSON scanner, in a worker thread (see app.py): the C scanner holds the GIL for the whole parse
(~0.3 s for 15 MB of small objects), which would stall the event loop even from a thread.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import itertools
import json
import json.scanner
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ApiError, invalid, invalid_json, nesting_too_deep
from .image_header import image_size

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

#: How deep client JSON that reaches Codex may nest (the value itself is level 1). Codex reads
#: a JSON-RPC message up to 127 levels (measured with codex-cli 0.169.0: a tool's parameters
#: sit 4 levels deep in `thread/start`, and nest 123 levels at most); 64 leaves room for Codex
#: to wrap them deeper, and is far beyond any real schema.
MAX_JSON_DEPTH = 64
#: Integers Codex's JSON holds: i64 and u64 (a larger one makes it refuse the message).
MIN_JSON_INT, MAX_JSON_INT = -(2**63), 2**64 - 1
#: The most JSON values (objects, arrays, strings, numbers) a body may hold. Read in a worker
#: thread, a body still costs the event loop whatever one call into C costs, and freeing a
#: refused body is one such call: 450,000 messages (1.35 million values) took ~30 ms to free.
#: More than the largest request the other limits let through is likely to need (10,000
#: messages of a part each make ~60,000 values); a body of up to 64 KB, read on the event
#: loop, cannot hold this many.
MAX_BODY_VALUES = 250_000
#: Longer than any model id; a model is passed as an argument and quoted in Codex's warnings.
MAX_MODEL_CHARS = 256

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: A lone surrogate can only come from a `\uD800`-`\uDFFF` escape (the bytes are read as
#: strict UTF-8), so a body without such an escape needs no search for one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,63}$")
#: base64 is decoded in slices of this many characters (a multiple of 4): one call over a
#: 20 MB image holds the GIL for ~0.1 s.
_BASE64_SLICE = 1 << 20
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^,;]*)*),(?P<data>.*)$",
                       re.DOTALL)


@dataclass(frozen=True)
class InputLimits:
    """How much one request may ask of Codex and of the proxy."""

    #: One image's decoded bytes (PROXY_MAX_IMAGE_MB).
    max_image_bytes: int = 20 * 1024 * 1024
    #: One image's pixels, from its header (PROXY_MAX_IMAGE_MEGAPIXELS). Codex decodes an
    #: image in full, at 4 bytes a pixel or more: 50 million pixels is ~200 MB in the child.
    max_image_pixels: int = 50_000_000
    #: All of a request's images together, decoded (PROXY_MAX_IMAGES_MB).
    max_images_bytes: int = 64 * 1024 * 1024
    #: Images in one request: each is a file, and an argument on `codex exec`'s command line.
    max_images: int = 500
    #: Messages in one request, and content parts plus tool calls over all of them: bounds
    #: the work of rendering the prompt, which happens on the event loop.
    max_messages: int = 10_000
    max_parts: int = 50_000


@dataclass
class Tally:
    """What the request has used of its limits so far, while it is read."""

    limits: InputLimits
    images: int = 0
    image_bytes: int = 0
    parts: int = 0


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
    #: The reasoning summaries asked for (Responses' `reasoning.summary`); None: the default.
    reasoning_summary: str | None = None
    #: What the conversation is known by upstream (Responses' `prompt_cache_key`); None: the
    #: proxy derives it from how the conversation starts.
    cache_key: str | None = None

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


def read_chat_request(raw: bytes | Sequence[bytes], *, default_model: str,
                      limits: InputLimits, interruptible: bool = False,
                      ) -> tuple[ChatRequest, dict[str, Any]]:
    """The request in a body's bytes (whole, or in the pieces it arrived in), and the decoded
    body; or a 400 `ApiError`.

    `interruptible` reads the JSON with the pure-Python scanner, which lets other threads run
    between values (the C scanner holds the GIL until it is done): for large bodies read in a
    worker thread while the event loop keeps serving."""
    body = decode_json_body(raw, interruptible=interruptible)
    return parse_chat_request(body, default_model=default_model, limits=limits), body


def decode_json_body(raw: bytes | Sequence[bytes], *, interruptible: bool = False) -> Any:
    """Decode a JSON body, refusing what JSON or Codex do not take: bytes that are no UTF-8
    (encoded surrogates included), NaN and infinities, nesting beyond the parser's recursion,
    and lone surrogates in any string or key."""
    try:
        text = _decode_text([raw] if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as error:
        raise invalid_json(str(error)) from None
    decoder = json.JSONDecoder(parse_constant=_refuse_constant)
    if interruptible:
        decoder.scan_once = _budgeted_python_scanner(decoder)  # type: ignore[attr-defined]
    try:
        body = decoder.decode(text)
    except RecursionError:
        raise nesting_too_deep(None, None) from None
    except _TooManyValues:
        raise invalid(f"The request body holds more than {MAX_BODY_VALUES:,} JSON values.",
                      None, "too_many_values") from None
    except ValueError as error:  # JSONDecodeError, NaN, an integer of over 4,300 digits
        raise invalid_json(str(error)) from None
    if _SURROGATE_ESCAPE.search(text) and (where := find_lone_surrogate(body)) is not None:
        holder = f"'{where}'" if where else "The request body"
        raise invalid(f"{holder} contains a lone UTF-16 surrogate (an unpaired "
                      "\\ud800-\\udfff escape), which is not text.", where or None,
                      "invalid_string")
    return body


def _decode_text(chunks: Sequence[bytes]) -> str:
    """The text of a body in pieces, in the encoding JSON detects (UTF-8, -16 or -32), strictly:
    json.loads(bytes) would let UTF-8-encoded surrogates through. Decoded a piece at a time,
    so that the only copy of the whole is the final join."""
    head = b"".join(itertools.islice(chunks, 4))[:4]
    decoder = codecs.getincrementaldecoder(json.detect_encoding(head))()
    pieces = [decoder.decode(chunk) for chunk in chunks]
    pieces.append(decoder.decode(b"", final=True))
    return "".join(pieces)


class _TooManyValues(Exception):
    pass


def _budgeted_python_scanner(decoder: json.JSONDecoder) -> Any:
    """The standard library's pure-Python scanner, which stops past `MAX_BODY_VALUES` values:
    it counts each object, array, string and number as the scanner asks for it."""
    counted = itertools.count(1)

    def counting(parse: Any) -> Any:
        def parse_counted(*args: Any) -> Any:
            if next(counted) > MAX_BODY_VALUES:
                raise _TooManyValues
            return parse(*args)
        return parse_counted

    # py_make_scanner takes these from the decoder when it is made, so they are set first.
    for name in ("parse_object", "parse_array", "parse_string", "parse_int", "parse_float"):
        setattr(decoder, name, counting(getattr(decoder, name)))
    return json.scanner.py_make_scanner(decoder)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def find_lone_surrogate(value: Any) -> str | None:
    """Where the first lone surrogate is, in document order: the path of the string holding
    it, or of the object whose key holds it ("" for the body itself); None if there is none."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if _has_surrogate(node):
                return path
        elif isinstance(node, dict):
            if any(_has_surrogate(key) for key in node):
                return path
            stack.extend((item, _child_path(path, key)) for key, item in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((node[index], f"{path}[{index}]")
                         for index in range(len(node) - 1, -1, -1))
    return None


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _child_path(path: str, key: str) -> str:
    # Keys are shown as they are when they look like names, and elided otherwise: a key can be
    # anything, a megabyte of text included.
    name = key if _SIMPLE_KEY.match(key) else "[…]"
    return f"{path}{name}" if not path or name.startswith("[") else f"{path}.{name}"


def check_codex_json(value: Any, param: str) -> None:
    """Refuse client JSON that Codex would choke on: nested over `MAX_JSON_DEPTH` levels, an
    integer beyond 64 bits, NaN or an infinity (`1e999` reads as one)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise nesting_too_deep(param, MAX_JSON_DEPTH)
            items = node.values() if isinstance(node, dict) else node
            stack.extend((item, depth + 1) for item in items)
        elif isinstance(node, int | float) and not _codex_reads_number(node):
            raise invalid(f"'{param}' holds a number Codex cannot read: integers must "
                          "fit in 64 bits, and numbers must be finite.", param,
                          "number_out_of_range")


def _codex_reads_number(value: int | float) -> bool:
    if isinstance(value, int):  # booleans too, which are 0 and 1
        return MIN_JSON_INT <= value <= MAX_JSON_INT
    return math.isfinite(value)


def parse_chat_request(body: Any, *, default_model: str,
                       limits: InputLimits | None = None) -> ChatRequest:
    """Check a decoded JSON body and build the request, or raise a 400 `ApiError`."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", None)
    tally = Tally(limits or InputLimits())

    model = parse_model(body.get("model"), default_model)
    stream = optional_bool(body, "stream", "stream", default=False)
    include_usage = False
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise invalid("'stream_options' must be an object.", "stream_options")
        include_usage = optional_bool(
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
    parallel_tool_calls = optional_bool(
        body, "parallel_tool_calls", "parallel_tool_calls", default=True
    )

    messages = _parse_messages(body.get("messages"), tally)
    output_schema = _parse_response_format(body.get("response_format"))
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        reasoning_effort=parse_effort(body),
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
    check_codex_json(schema, "response_format.json_schema.schema")
    return schema


def parse_model(raw: Any, default_model: str) -> str:
    """The model id, checked: it becomes an argument of Codex's command line (`-m`) and a
    field of its JSON-RPC, and Codex quotes it in its warnings, which are logged. The message
    never repeats the model: it can be anything, control characters included."""
    if raw is None:
        return default_model
    if not isinstance(raw, str) or not raw.strip():
        raise invalid("'model' must be a non-empty string.", "model")
    model = raw.strip()
    if len(model) > MAX_MODEL_CHARS:
        raise invalid(f"'model' is {len(model):,} characters long; a model id has at most "
                      f"{MAX_MODEL_CHARS}.", "model", "invalid_model")
    if not model.isprintable() or " " in model:
        raise invalid("'model' must be printable characters without spaces, control "
                      "characters or surrogates.", "model", "invalid_model")
    if model.startswith("-"):
        raise invalid("'model' must not begin with '-' (Codex would read it as an option).",
                      "model", "invalid_model")
    return model


def optional_bool(container: dict[str, Any], key: str, param: str, *, default: bool) -> bool:
    value = container.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"'{param}' must be a boolean.", param)
    return value


def parse_effort(body: dict[str, Any]) -> str | None:
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


def _parse_messages(raw: Any, tally: Tally) -> tuple[Message, ...]:
    if raw is None:
        raise invalid("'messages' is required.", "messages")
    if not isinstance(raw, list) or not raw:
        raise invalid("'messages' must be a non-empty array.", "messages")
    if len(raw) > tally.limits.max_messages:
        raise invalid(f"'messages' has {len(raw):,} messages; at most "
                      f"{tally.limits.max_messages:,} are accepted.", "messages",
                      "array_above_max_length")
    return tuple(
        _parse_message(item, f"messages[{index}]", tally)
        for index, item in enumerate(raw)
    )


def _parse_message(raw: Any, where: str, tally: Tally) -> Message:
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
        tool_calls = _parse_tool_calls(raw["tool_calls"], f"{where}.tool_calls", tally)

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
    parts = _parse_content(content, f"{where}.content", allowed, tally)
    return Message(role, parts, name, tool_calls, tool_call_id)


def count_parts(tally: Tally, count: int, where: str) -> None:
    tally.parts += count
    if tally.parts > tally.limits.max_parts:
        raise invalid(f"The messages have more than {tally.limits.max_parts:,} content parts "
                      f"and tool calls together (at '{where}').", where,
                      "array_above_max_length")


def _parse_content(
    content: Any, where: str, allowed: tuple[str, ...], tally: Tally
) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (TextPart(content),)
    if not isinstance(content, list):
        raise invalid(f"'{where}' must be a string or an array of content parts.", where)
    count_parts(tally, len(content), where)
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
            parts.append(parse_image_url(part.get("image_url"), f"{at}.image_url", tally))
    return tuple(parts)


def parse_image_url(raw: Any, where: str, tally: Tally, *,
                    url_param: str | None = None) -> ImagePart:
    """An `image_url` object (`url`, `detail`) at `where`; `url_param` names the URL where it
    is not `<where>.url` (Responses' `input_image.image_url`)."""
    url = raw.get("url") if isinstance(raw, dict) else None
    param = url_param or f"{where}.url"
    if not isinstance(url, str):
        raise invalid(f"'{param}' must be a string.", param)
    if not url.startswith("data:"):
        raise invalid(
            "Only inline images are accepted: send the image as a data: URL "
            "(data:image/png;base64,...). The proxy never fetches URLs.",
            param,
            "image_url_not_supported",
        )
    match = _DATA_URL.match(url)
    media_type = match["type"].lower() if match else ""
    if not match or media_type not in IMAGE_MEDIA_TYPES:
        raise invalid(
            "Inline images must be base64 data: URLs of type image/png, image/jpeg, image/gif "
            "or image/webp.",
            param,
            "invalid_image",
        )
    if ";base64" not in match["params"].lower():
        raise invalid("Inline images must be base64-encoded (;base64,).", param,
                      "invalid_image")
    limits = tally.limits
    tally.images += 1
    if tally.images > limits.max_images:
        raise invalid(f"The request has more than {limits.max_images} images.", param,
                      "image_too_large")
    encoded = match["data"]
    # Refuse before decoding: base64 is 4/3 of the data, so this bounds the work done.
    if len(encoded) * 3 // 4 > limits.max_image_bytes + 3:
        raise _image_too_large(param, limits.max_image_bytes)
    data = _decode_base64(encoded, param)
    if len(data) > limits.max_image_bytes:
        raise _image_too_large(param, limits.max_image_bytes)
    tally.image_bytes += len(data)
    if tally.image_bytes > limits.max_images_bytes:
        raise invalid(
            f"The request's images come to more than the {_megabytes(limits.max_images_bytes)} "
            "MB allowed in one request (PROXY_MAX_IMAGES_MB).", param, "image_too_large")
    # Codex silently drops an image it cannot decode, so a broken one would vanish from the
    # conversation without a word. The bytes decide the type; a mislabelled data: URL is fine.
    sniffed = sniff_image_type(data)
    size = image_size(data) if sniffed else None
    if sniffed is None or size is None:
        raise invalid("The image data is not a PNG, JPEG, GIF or WebP image with a readable "
                      "size.", param, "invalid_image")
    width, height = size
    if width * height > limits.max_image_pixels:
        raise invalid(
            f"The image is {width}x{height} pixels, more than the {limits.max_image_pixels:,} "
            "allowed (PROXY_MAX_IMAGE_MEGAPIXELS): Codex decodes images in full. Scale it "
            "down first; Codex would shrink it to 2048x768 anyway.", param, "image_too_large")
    detail = raw.get("detail") or "auto"
    if detail not in ("auto", "low", "high"):
        raise invalid("'image_url.detail' must be auto, low or high.", f"{where}.detail")
    return ImagePart(sniffed, data, detail)


def _decode_base64(encoded: str, param: str) -> bytes:
    """Strict base64, decoded a slice at a time (see `_BASE64_SLICE`)."""
    slices = [encoded[start:start + _BASE64_SLICE]
              for start in range(0, len(encoded), _BASE64_SLICE)]
    try:
        # Padding may only end the data: a slice that is not the last must not hold any.
        if len(encoded) % 4 or any("=" in piece for piece in slices[:-1]):
            raise binascii.Error("misplaced padding")
        return b"".join(base64.b64decode(piece, validate=True) for piece in slices)
    except (binascii.Error, ValueError):
        raise invalid("The image's base64 data is invalid.", param, "invalid_image") from None


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


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:g}"


def _image_too_large(param: str, max_bytes: int) -> ApiError:
    return invalid(
        f"The image is larger than the {_megabytes(max_bytes)} MB allowed "
        "(PROXY_MAX_IMAGE_MB).",
        param,
        "image_too_large",
    )


def _parse_tool_calls(raw: Any, where: str, tally: Tally) -> tuple[ToolCall, ...]:
    if not isinstance(raw, list):
        raise invalid(f"'{where}' must be an array.", where)
    count_parts(tally, len(raw), where)
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
            # Some clients send the parsed object; the model only ever sees JSON text. Checked
            # first: a value nested ~1,000 levels would overflow json.dumps' recursion.
            check_codex_json(arguments, f"{at}.function.arguments")
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
        tools.append(parse_function_tool(function, f"{at}.function", seen))
    return tuple(tools)


def parse_function_tool(spec: dict[str, Any], at: str, seen: set[str]) -> FunctionTool:
    """A function tool's `name`, `description`, `parameters` and `strict`, checked; `at` is
    where they sit (`tools[3].function` in Chat Completions, `tools[3]` in Responses)."""
    name = spec.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise invalid(f"'{at}.name' must be 1-64 letters, digits, '_' or '-'; got {name!r}.",
                      f"{at}.name")
    if name in seen:
        raise invalid(f"Tool name {name!r} is defined twice.", f"{at}.name")
    seen.add(name)
    description = spec.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise invalid(f"'{at}.description' must be a string.", f"{at}.description")
    parameters = spec.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise invalid(f"'{at}.parameters' must be a JSON Schema object.", f"{at}.parameters")
    check_codex_json(parameters, f"{at}.parameters")
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise invalid(f"'{at}.strict' must be a boolean.", f"{at}.strict")
    return FunctionTool(name, description, parameters, bool(strict))


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
