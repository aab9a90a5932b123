"""Validation of a Responses API request body into the same request a chat completion becomes
(pure, no I/O).

`POST /v1/responses` and `POST /v1/chat/completions` share everything past this module: the
run, the engine, the answer policy. What a Responses body says maps onto a `ChatRequest`:

* `instructions` -> a leading system message (the thread's instructions);
* `input`: a string -> one user message; items -> messages in order: a `message` (roles user,
  assistant, system, developer; content a string or `input_text` / `output_text` /
  `input_image` / `refusal` parts), a `function_call` -> an assistant message with that one
  call, a `function_call_output` -> a tool message. `reasoning` items the client passes back
  are left out: Chat Completions clients never send them, and the history stays the same
  whichever API a conversation came by;
* `tools` of type `function` (`name`, `description`, `parameters`, `strict`); tools of other
  types (hosted ones such as `web_search`, freeform `custom` tools, `namespace`s of
  functions) cannot be offered to the model through Codex: they are left out, and
  `ResponsesRequest.dropped_tools` names them for the log;
* `tool_choice` (`auto`, `none`, `required`, `{"type": "function", "name": ...}`),
  `parallel_tool_calls`, `reasoning.effort` and `reasoning.summary`, `text.format`
  (`json_schema` -> the turn's output schema), `stream`, `prompt_cache_key` (the
  conversation's cache key);
* `store`, `metadata`, `max_output_tokens`, `temperature`, `top_p`, `truncation`, `user`,
  `include`, `service_tier`: accepted and echoed where the response object has them; Codex has
  no such knobs.
* `previous_response_id` is refused (400): the proxy keeps no responses. Send the whole input,
  as Codex itself and most agents do (`store: false`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .chat_request import (
    KNOWN_EFFORTS,
    ChatRequest,
    FunctionTool,
    InputLimits,
    Message,
    Part,
    Tally,
    TextPart,
    ToolCall,
    check_codex_json,
    count_parts,
    decode_json_body,
    optional_bool,
    parse_function_tool,
    parse_image_url,
    parse_model,
)
from .errors import invalid

ROLES = ("user", "assistant", "system", "developer")
SUMMARIES = ("auto", "concise", "detailed", "none")


@dataclass(frozen=True)
class ResponsesRequest:
    request: ChatRequest
    #: The body's fields the response object echoes.
    echo: dict[str, Any] = field(default_factory=dict)
    #: Tools of types Codex cannot offer the model, by type and name, for the log.
    dropped_tools: tuple[str, ...] = ()


def read_responses_request(raw: bytes | Sequence[bytes], *, default_model: str,
                           limits: InputLimits, interruptible: bool = False,
                           ) -> tuple[ResponsesRequest, dict[str, Any]]:
    """The request in a body's bytes, and the decoded body; or a 400 `ApiError`."""
    body = decode_json_body(raw, interruptible=interruptible)
    return parse_responses_request(body, default_model=default_model, limits=limits), body


def parse_responses_request(body: Any, *, default_model: str,
                            limits: InputLimits | None = None) -> ResponsesRequest:
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", None)
    tally = Tally(limits or InputLimits())
    if body.get("previous_response_id") is not None:
        raise invalid("'previous_response_id' is not supported: the proxy keeps no responses. "
                      "Send the whole conversation in 'input' (with 'store': false).",
                      "previous_response_id", "previous_response_id_unsupported")
    model = parse_model(body.get("model"), default_model)
    messages: list[Message] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid("'instructions' must be a string.", "instructions")
        messages.append(Message("system", (TextPart(instructions),)))
    messages += _parse_input(body.get("input"), tally)
    tools, dropped = _parse_tools(body.get("tools"))
    tool_choice, forced = _parse_tool_choice(body.get("tool_choice"), tools)
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise invalid("'reasoning' must be an object.", "reasoning")
    effort, summary = _parse_reasoning(reasoning or {})
    cache_key = body.get("prompt_cache_key")
    if cache_key is not None and not isinstance(cache_key, str):
        raise invalid("'prompt_cache_key' must be a string.", "prompt_cache_key")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("'metadata' must be an object.", "metadata")
    request = ChatRequest(
        model=model,
        messages=tuple(messages),
        stream=optional_bool(body, "stream", "stream", default=False),
        include_usage=True,
        reasoning_effort=effort,
        tools=tools,
        tool_choice=tool_choice,
        forced_tool=forced,
        parallel_tool_calls=optional_bool(body, "parallel_tool_calls", "parallel_tool_calls",
                                          default=True),
        output_schema=_parse_text_format(body.get("text")),
        reasoning_summary=summary,
        cache_key=cache_key,
    )
    echo = {key: body.get(key) for key in ("instructions", "metadata", "max_output_tokens",
                                           "temperature", "top_p", "store", "user",
                                           "prompt_cache_key")}
    echo["store"] = bool(echo["store"]) if echo["store"] is not None else False
    echo["metadata"] = metadata or {}
    echo["text"] = body.get("text") if isinstance(body.get("text"), dict) else {
        "format": {"type": "text"}}
    echo["reasoning"] = {"effort": effort, "summary": summary}
    echo["tools"] = [tool for tool in body.get("tools") or []
                     if isinstance(tool, dict) and tool.get("type") == "function"]
    echo["tool_choice"] = body.get("tool_choice") or "auto"
    echo["parallel_tool_calls"] = request.parallel_tool_calls
    return ResponsesRequest(request, echo, dropped)


def _parse_input(raw: Any, tally: Tally) -> list[Message]:
    if isinstance(raw, str):
        return [Message("user", (TextPart(raw),))]
    if not isinstance(raw, list) or not raw:
        raise invalid("'input' must be a string or a non-empty array of items.", "input")
    if len(raw) > tally.limits.max_messages:
        raise invalid(f"'input' has {len(raw):,} items; at most "
                      f"{tally.limits.max_messages:,} are accepted.", "input",
                      "array_above_max_length")
    messages = []
    for index, item in enumerate(raw):
        message = _parse_item(item, f"input[{index}]", tally)
        if message is not None:
            messages.append(message)
    if not messages:
        raise invalid("'input' has no message to answer.", "input")
    return messages


def _parse_item(raw: Any, at: str, tally: Tally) -> Message | None:
    if not isinstance(raw, dict):
        raise invalid(f"'{at}' must be an object.", at)
    kind = raw.get("type", "message")  # an easy input message may leave out its type
    if kind == "message":
        return _parse_message(raw, at, tally)
    if kind == "function_call":
        call_id, name = raw.get("call_id"), raw.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise invalid(f"'{at}.call_id' must be a non-empty string.", f"{at}.call_id")
        if not isinstance(name, str) or not name:
            raise invalid(f"'{at}.name' must be a non-empty string.", f"{at}.name")
        arguments = raw.get("arguments", "")
        if not isinstance(arguments, str):
            raise invalid(f"'{at}.arguments' must be a JSON string.", f"{at}.arguments")
        count_parts(tally, 1, at)
        return Message("assistant", (), None, (ToolCall(call_id, name, arguments),))
    if kind == "function_call_output":
        call_id = raw.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise invalid(f"'{at}.call_id' must be a non-empty string.", f"{at}.call_id")
        output = raw.get("output")
        if isinstance(output, str):
            parts: tuple[Part, ...] = (TextPart(output),)
        elif isinstance(output, list):
            parts = _parse_content(output, f"{at}.output", ("input_text", "output_text"),
                                   tally)
        else:
            raise invalid(f"'{at}.output' must be a string or an array of text parts.",
                          f"{at}.output")
        return Message("tool", parts, tool_call_id=call_id)
    if kind == "reasoning":
        return None  # the model's own reasoning, passed back: see the module docstring
    raise invalid(f"'{at}.type' must be one of message, function_call, function_call_output, "
                  f"reasoning; got {kind!r}.", f"{at}.type")


def _parse_message(raw: dict[str, Any], at: str, tally: Tally) -> Message:
    role = raw.get("role")
    if role not in ROLES:
        raise invalid(f"'{at}.role' must be one of {', '.join(ROLES)}; got {role!r}.",
                      f"{at}.role")
    content = raw.get("content")
    if isinstance(content, str):
        return Message(role, (TextPart(content),))
    if not isinstance(content, list):
        raise invalid(f"'{at}.content' must be a string or an array of content parts.",
                      f"{at}.content")
    allowed = (("output_text", "refusal") if role == "assistant"
               else ("input_text", "input_image") if role == "user" else ("input_text",))
    return Message(role, _parse_content(content, f"{at}.content", allowed, tally))


def _parse_content(content: list[Any], where: str, allowed: tuple[str, ...],
                   tally: Tally) -> tuple[Part, ...]:
    count_parts(tally, len(content), where)
    parts: list[Part] = []
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise invalid(f"'{at}.type' must be one of {', '.join(allowed)} here; got "
                          f"{kind!r}.", f"{at}.type")
        if kind == "input_image":
            image = parse_image_url({"url": part.get("image_url"),
                                     "detail": part.get("detail")}, at, tally,
                                    url_param=f"{at}.image_url")
            parts.append(image)
            continue
        key = "refusal" if kind == "refusal" else "text"
        text = part.get(key)
        if not isinstance(text, str):
            raise invalid(f"'{at}.{key}' must be a string.", f"{at}.{key}")
        parts.append(TextPart(text))
    return tuple(parts)


def _parse_tools(raw: Any) -> tuple[tuple[FunctionTool, ...], tuple[str, ...]]:
    if raw is None:
        return (), ()
    if not isinstance(raw, list):
        raise invalid("'tools' must be an array of tools.", "tools")
    tools: list[FunctionTool] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        at = f"tools[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise invalid(f"'{at}' must be a tool object with a 'type'.", f"{at}.type")
        if item["type"] == "function":
            tools.append(parse_function_tool(item, at, seen))
        else:
            name = item.get("name")
            dropped.append(f"{item['type']} {name}" if isinstance(name, str) else item["type"])
    return tuple(tools), tuple(dropped)


def _parse_tool_choice(raw: Any, tools: tuple[FunctionTool, ...]) -> tuple[Any, str | None]:
    if raw is None or raw == "auto":
        return "auto", None
    if raw == "none":
        return "none", None
    if raw == "required":
        if not tools:
            raise invalid("tool_choice 'required' needs function tools.", "tool_choice")
        return "required", None
    if isinstance(raw, dict) and raw.get("type") == "function":
        name = raw.get("name")
        if not isinstance(name, str) or name not in {tool.name for tool in tools}:
            raise invalid(f"tool_choice names {name!r}, which is not a function in 'tools'.",
                          "tool_choice.name")
        return "function", name
    raise invalid("'tool_choice' must be 'auto', 'none', 'required' or "
                  '{"type": "function", "name": ...}.', "tool_choice")


def _parse_reasoning(raw: dict[str, Any]) -> tuple[str | None, str | None]:
    effort, summary = raw.get("effort"), raw.get("summary")
    if effort is not None and (not isinstance(effort, str) or effort not in KNOWN_EFFORTS):
        raise invalid(f"'reasoning.effort' must be one of {', '.join(KNOWN_EFFORTS)}; got "
                      f"{effort!r}.", "reasoning.effort", "invalid_reasoning_effort")
    if summary is not None and summary not in SUMMARIES:
        raise invalid(f"'reasoning.summary' must be one of {', '.join(SUMMARIES)}.",
                      "reasoning.summary")
    return effort, summary


def _parse_text_format(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise invalid("'text' must be an object.", "text")
    spec = raw.get("format")
    if spec is None:
        return None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise invalid("'text.format.type' must be one of text, json_object, json_schema.",
                      "text.format.type")
    if kind != "json_schema":
        return None  # json_object: see chat_request._parse_response_format
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise invalid("'text.format.schema' must be a JSON Schema object.",
                      "text.format.schema")
    check_codex_json(schema, "text.format.schema")
    return schema

