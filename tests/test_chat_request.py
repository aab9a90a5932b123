"""Unit tests for chat_request.py: turning a Chat Completions body into a ChatRequest."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from codex_openai_proxy.chat_request import (
    KNOWN_EFFORTS,
    MAX_BODY_VALUES,
    MAX_JSON_DEPTH,
    ChatRequest,
    FunctionTool,
    ImagePart,
    InputLimits,
    Message,
    TextPart,
    ToolCall,
    parse_chat_request,
    read_chat_request,
)
from codex_openai_proxy.errors import ApiError

from conftest import data_url, gif_header, jpeg_header, png_header, webp_header

MAX_IMAGE = 1024
PNG = png_header(2, 3)
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
USER_HI = {"role": "user", "content": "hi"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def parse(body: Any, *, max_image_bytes: int = MAX_IMAGE, **limits: Any) -> ChatRequest:
    return parse_chat_request(body, default_model="gpt-5", limits=InputLimits(
        max_image_bytes=max_image_bytes, **limits))


def body_with(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-5", "messages": [USER_HI], **fields}


def rejected(body: Any, *, max_image_bytes: int = MAX_IMAGE, **limits: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(body, max_image_bytes=max_image_bytes, **limits)
    error = caught.value
    assert error.status == 400
    assert error.type == "invalid_request_error"
    return error


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def user_with_parts(*parts: dict[str, Any]) -> dict[str, Any]:
    return body_with(messages=[{"role": "user", "content": list(parts)}])


# -- the basic shapes --------------------------------------------------------------------------


def test_minimal_request() -> None:
    request = parse({"model": "gpt-5", "messages": [USER_HI]})
    assert request == ChatRequest(
        model="gpt-5", messages=(Message("user", (TextPart("hi"),)),)
    )
    assert request.stream is False
    assert request.include_usage is False
    assert request.reasoning_effort is None
    assert request.tools == ()
    assert request.tool_choice == "auto"
    assert request.forced_tool is None
    assert request.parallel_tool_calls is True


def test_missing_model_uses_the_default() -> None:
    request = parse_chat_request({"messages": [USER_HI]}, default_model="configured")
    assert request.model == "configured"


def test_model_is_stripped() -> None:
    assert parse(body_with(model="  o3 ")).model == "o3"


@pytest.mark.parametrize("model", ["", "   ", 5, ["gpt-5"], True])
def test_bad_model_is_rejected(model: Any) -> None:
    assert rejected(body_with(model=model)).param == "model"


@pytest.mark.parametrize("model", [
    "gpt-5.5:high", "openai/gpt-oss-20b", "o3-mini-2025-01-31", "modèle_é", "m" * 256,
])
def test_model_ids_of_every_usual_shape_are_accepted(model: str) -> None:
    assert parse(body_with(model=model)).model == model


@pytest.mark.parametrize("model", [
    "gpt\n5", "gpt-5\r\nforged: line", "gpt\x005", "\x1b[31mred", "gpt\u202e5", "gpt\ud8005",
    "gpt 5", "gpt\u00a05", "gpt\t5", "-c", "--help", "-", "m" * 257, "m" * 200_000,
])
def test_a_model_codex_could_not_take_is_refused(model: str) -> None:
    error = rejected(body_with(model=model))
    assert error.param == "model"
    assert error.code == "invalid_model"
    # Never echoed: the model could be a megabyte of control characters.
    assert len(error.message) < 200 and (len(model) < 3 or model not in error.message)


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_body_must_be_an_object(body: Any) -> None:
    error = rejected(body)
    assert error.param is None
    assert "JSON object" in error.message


def test_all_roles_and_order_are_kept() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": "dev note"},
        {"role": "user", "content": "q1", "name": "alice"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    request = parse(body_with(messages=messages))
    assert [m.role for m in request.messages] == [
        "system", "developer", "user", "assistant", "user"
    ]
    assert [m.text for m in request.messages] == ["be brief", "dev note", "q1", "a1", "q2"]
    assert request.messages[2].name == "alice"
    assert request.messages[0].name is None


def test_text_content_parts_are_kept_in_order() -> None:
    request = parse(user_with_parts(
        {"type": "text", "text": "one "}, {"type": "text", "text": "two"}
    ))
    message = request.messages[0]
    assert message.parts == (TextPart("one "), TextPart("two"))
    assert message.text == "one two"


def test_system_message_may_use_text_parts() -> None:
    request = parse(body_with(messages=[
        {"role": "system", "content": [{"type": "text", "text": "rules"}]}, USER_HI,
    ]))
    assert request.messages[0].parts == (TextPart("rules"),)


def test_empty_string_content_is_accepted() -> None:
    assert parse(body_with(messages=[{"role": "user", "content": ""}])).messages[0].parts == (
        TextPart(""),
    )


def test_assistant_refusal_part_becomes_text() -> None:
    request = parse(body_with(messages=[
        USER_HI,
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
        USER_HI,
    ]))
    assert request.messages[1].parts == (TextPart("I can't."),)


# -- messages rejected -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (None, "messages"),
        ([], "messages"),
        ("hi", "messages"),
        ({"role": "user", "content": "hi"}, "messages"),
        (["hi"], "messages[0]"),
        ([USER_HI, {"role": "function", "content": "x"}], "messages[1].role"),
        ([{"content": "x"}], "messages[0].role"),
        ([{"role": "User", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": "x", "name": 7}], "messages[0].name"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": None}], "messages[0].content"),
        ([{"role": "system", "content": None}, USER_HI], "messages[0].content"),
        ([USER_HI, {"role": "assistant", "content": None}], "messages[1].content"),
        ([USER_HI, {"role": "assistant", "content": None, "tool_calls": []}],
         "messages[1].content"),
        ([{"role": "user", "content": 42}], "messages[0].content"),
        ([{"role": "user", "content": {"type": "text", "text": "x"}}], "messages[0].content"),
        ([{"role": "user", "content": ["x"]}], "messages[0].content[0].type"),
        ([{"role": "user", "content": [{"text": "x"}]}], "messages[0].content[0].type"),
        ([{"role": "user", "content": [{"type": "audio", "x": 1}]}],
         "messages[0].content[0].type"),
        ([{"role": "user", "content": [{"type": "text", "text": 1}]}],
         "messages[0].content[0].text"),
        ([{"role": "user", "content": [{"type": "text"}]}], "messages[0].content[0].text"),
        ([{"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}],
         "messages[0].content[0].type"),
        ([{"role": "system", "content": [image_part(PNG_URL)]}, USER_HI],
         "messages[0].content[0].type"),
        ([USER_HI, {"role": "assistant", "content": [image_part(PNG_URL)]}],
         "messages[1].content[0].type"),
        ([USER_HI, {"role": "assistant", "content": [{"type": "refusal", "refusal": 3}]}],
         "messages[1].content[0].refusal"),
    ],
)
def test_bad_messages_are_rejected_naming_the_field(messages: Any, param: str) -> None:
    assert rejected(body_with(messages=messages)).param == param


def test_role_error_lists_the_roles() -> None:
    error = rejected(body_with(messages=[{"role": "robot", "content": "x"}]))
    assert "system, developer, user, assistant, tool" in error.message
    assert "'robot'" in error.message


# -- tool calls and tool results in the history ------------------------------------------------


def assistant_call(
    call_id: str = "call_1", name: str = "get_weather", arguments: Any = '{"city":"Paris"}'
) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}


def test_assistant_with_tool_calls_and_null_content() -> None:
    request = parse(body_with(messages=[
        USER_HI,
        {"role": "assistant", "content": None, "tool_calls": [assistant_call()]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]))
    assistant, tool = request.messages[1], request.messages[2]
    assert assistant.parts == ()
    assert assistant.tool_calls == (ToolCall("call_1", "get_weather", '{"city":"Paris"}'),)
    assert tool.role == "tool"
    assert tool.tool_call_id == "call_1"
    assert tool.text == "sunny"


def test_assistant_with_tool_calls_and_no_content_key() -> None:
    request = parse(body_with(messages=[
        USER_HI, {"role": "assistant", "tool_calls": [assistant_call()]},
    ]))
    assert request.messages[1].tool_calls[0].id == "call_1"


def test_assistant_with_text_and_several_tool_calls() -> None:
    request = parse(body_with(messages=[
        USER_HI,
        {"role": "assistant", "content": "Let me check.",
         "tool_calls": [assistant_call("a", "f1", "{}"), assistant_call("b", "f2", "[1]")]},
    ]))
    message = request.messages[1]
    assert message.text == "Let me check."
    assert message.tool_calls == (ToolCall("a", "f1", "{}"), ToolCall("b", "f2", "[1]"))


def test_tool_call_arguments_given_as_object_become_json_text() -> None:
    request = parse(body_with(messages=[
        USER_HI,
        {"role": "assistant", "tool_calls": [assistant_call(arguments={"city": "Zürich"})]},
    ]))
    assert request.messages[1].tool_calls[0].arguments == '{"city": "Zürich"}'


def test_tool_call_without_arguments_gets_empty_text() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f"}}
    request = parse(body_with(messages=[USER_HI, {"role": "assistant", "tool_calls": [call]}]))
    assert request.messages[1].tool_calls[0].arguments == ""


def test_tool_calls_on_a_user_message_are_ignored() -> None:
    request = parse(body_with(messages=[
        {"role": "user", "content": "x", "tool_calls": "nonsense"},
    ]))
    assert request.messages[0].tool_calls == ()


def test_tool_message_with_text_parts() -> None:
    request = parse(body_with(messages=[
        USER_HI,
        {"role": "assistant", "tool_calls": [assistant_call()]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "ok"}]},
    ]))
    assert request.messages[2].parts == (TextPart("ok"),)


@pytest.mark.parametrize(
    ("tool_calls", "param"),
    [
        ("call", "messages[1].tool_calls"),
        ({"id": "x"}, "messages[1].tool_calls"),
        (["x"], "messages[1].tool_calls[0].function"),
        ([{"id": "c"}], "messages[1].tool_calls[0].function"),
        ([{"id": "c", "function": "f"}], "messages[1].tool_calls[0].function"),
        ([{"function": {"name": "f"}}], "messages[1].tool_calls[0].id"),
        ([{"id": "", "function": {"name": "f"}}], "messages[1].tool_calls[0].id"),
        ([{"id": 3, "function": {"name": "f"}}], "messages[1].tool_calls[0].id"),
        ([{"id": "c", "function": {}}], "messages[1].tool_calls[0].function.name"),
        ([{"id": "c", "function": {"name": ""}}], "messages[1].tool_calls[0].function.name"),
        ([{"id": "c", "function": {"name": "f", "arguments": 5}}],
         "messages[1].tool_calls[0].function.arguments"),
        ([assistant_call(), {"id": "d", "function": {"name": None}}],
         "messages[1].tool_calls[1].function.name"),
    ],
)
def test_bad_tool_calls_are_rejected(tool_calls: Any, param: str) -> None:
    body = body_with(messages=[
        USER_HI, {"role": "assistant", "content": None, "tool_calls": tool_calls},
    ])
    assert rejected(body).param == param


@pytest.mark.parametrize("tool_call_id", [None, "", 5])
def test_tool_message_needs_a_tool_call_id(tool_call_id: Any) -> None:
    message: dict[str, Any] = {"role": "tool", "content": "result"}
    if tool_call_id is not None:
        message["tool_call_id"] = tool_call_id
    error = rejected(body_with(messages=[USER_HI, message]))
    assert error.param == "messages[1].tool_call_id"


def test_tool_message_needs_content() -> None:
    error = rejected(body_with(messages=[USER_HI, {"role": "tool", "tool_call_id": "c"}]))
    assert error.param == "messages[1].content"


# -- images ------------------------------------------------------------------------------------


def test_inline_png_is_decoded() -> None:
    request = parse(user_with_parts(
        {"type": "text", "text": "what is this?"}, image_part(PNG_URL),
    ))
    message = request.messages[0]
    assert message.parts == (TextPart("what is this?"), ImagePart("image/png", PNG))
    assert message.images == (ImagePart("image/png", PNG),)
    assert message.text == "what is this?"
    assert request.images == (ImagePart("image/png", PNG),)
    assert message.images[0].extension == "png"


# The first bytes of each format Codex reads: the bytes, not the data: URL, decide the type.
SIGNATURES = {
    "image/png": PNG,
    "image/jpeg": jpeg_header(2, 3),
    "image/gif": gif_header(2, 3),
    "image/webp": webp_header(2, 3),
}


@pytest.mark.parametrize(
    ("media_type", "stored_type", "extension"),
    [
        ("image/png", "image/png", "png"),
        ("image/jpeg", "image/jpeg", "jpg"),
        ("image/jpg", "image/jpeg", "jpg"),
        ("IMAGE/JPEG", "image/jpeg", "jpg"),
        ("image/gif", "image/gif", "gif"),
        ("image/webp", "image/webp", "webp"),
    ],
)
def test_accepted_image_types(media_type: str, stored_type: str, extension: str) -> None:
    data = SIGNATURES[stored_type]
    url = f"data:{media_type};base64," + base64.b64encode(data).decode()
    image = parse(user_with_parts(image_part(url))).messages[0].images[0]
    assert image.media_type == stored_type
    assert image.extension == extension
    assert image.data == data


def test_a_mislabelled_image_gets_the_type_of_its_bytes() -> None:
    url = "data:image/png;base64," + base64.b64encode(SIGNATURES["image/jpeg"]).decode()
    image = parse(user_with_parts(image_part(url))).messages[0].images[0]
    assert image.media_type == "image/jpeg" and image.extension == "jpg"


@pytest.mark.parametrize("data", [b"abc", b"", b"BM" + bytes(40), b"RIFF\x00\x00\x00\x00WAVE"])
def test_bytes_that_are_no_supported_image_are_rejected(data: bytes) -> None:
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    error = rejected(user_with_parts(image_part(url)))
    assert error.code == "invalid_image"
    assert error.param == "messages[0].content[0].image_url.url"


def test_data_url_parameters_before_base64_are_allowed() -> None:
    url = "data:image/png;name=x.png;base64," + base64.b64encode(PNG).decode()
    assert parse(user_with_parts(image_part(url))).messages[0].images[0].data == PNG


def test_images_across_messages_in_order() -> None:
    first_data, second_data = SIGNATURES["image/gif"], SIGNATURES["image/webp"]
    first = "data:image/gif;base64," + base64.b64encode(first_data).decode()
    second = "data:image/webp;base64," + base64.b64encode(second_data).decode()
    request = parse(body_with(messages=[
        {"role": "user", "content": [image_part(first)]},
        {"role": "assistant", "content": "seen"},
        {"role": "user", "content": [{"type": "text", "text": "and"}, image_part(second)]},
    ]))
    assert [image.data for image in request.images] == [first_data, second_data]


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/cat.png",
        "http://example.com/cat.png",
        "file:///etc/passwd",
        "ftp://example.com/x.png",
        " data:image/png;base64,AAAA",
    ],
)
def test_remote_image_urls_are_refused(url: str) -> None:
    body = body_with(messages=[
        USER_HI,
        {"role": "user", "content": [{"type": "text", "text": "look"}, image_part(url)]},
    ])
    error = rejected(body)
    assert error.param == "messages[1].content[1].image_url.url"
    assert error.code == "image_url_not_supported"
    assert "data: URL" in error.message


@pytest.mark.parametrize(
    "url",
    [
        "data:text/plain;base64,aGVsbG8=",
        "data:image/svg+xml;base64,PHN2Zz4=",
        "data:image/bmp;base64,Qk0=",
        "data:;base64,AAAA",
        "data:image/png",
        "data:image/png;base64",
    ],
)
def test_wrong_image_type_is_rejected(url: str) -> None:
    error = rejected(user_with_parts(image_part(url)))
    assert error.param == "messages[0].content[0].image_url.url"
    assert error.code == "invalid_image"


def test_image_must_be_base64() -> None:
    error = rejected(user_with_parts(image_part("data:image/png,%89PNG")))
    assert error.param == "messages[0].content[0].image_url.url"
    assert error.code == "invalid_image"
    assert "base64" in error.message


@pytest.mark.parametrize("data", ["!!!!", "AAA", "AA=A", "QUJD\nREVG"])
def test_invalid_base64_is_rejected(data: str) -> None:
    error = rejected(user_with_parts(image_part("data:image/png;base64," + data)))
    assert error.param == "messages[0].content[0].image_url.url"
    assert error.code == "invalid_image"


@pytest.mark.parametrize(
    "image_url", [None, "data:image/png;base64,AAAA", {}, {"url": 5}, {"url": None}]
)
def test_image_url_must_be_an_object_with_a_string_url(image_url: Any) -> None:
    part = {"type": "image_url", "image_url": image_url}
    error = rejected(user_with_parts(part))
    assert error.param == "messages[0].content[0].image_url.url"


def test_image_at_the_size_cap_is_accepted() -> None:
    for size in (MAX_IMAGE - 2, MAX_IMAGE - 1, MAX_IMAGE):
        data = PNG + bytes(size - len(PNG))
        url = "data:image/png;base64," + base64.b64encode(data).decode()
        assert parse(user_with_parts(image_part(url))).images[0].data == data


@pytest.mark.parametrize("size", [MAX_IMAGE + 1, MAX_IMAGE + 2, MAX_IMAGE + 3, 10 * MAX_IMAGE])
def test_image_over_the_size_cap_is_rejected(size: int) -> None:
    url = "data:image/png;base64," + base64.b64encode(bytes(size)).decode()
    error = rejected(user_with_parts({"type": "text", "text": "x"}, image_part(url)))
    assert error.param == "messages[0].content[1].image_url.url"
    assert error.code == "image_too_large"
    assert "PROXY_MAX_IMAGE_MB" in error.message


def test_size_cap_message_states_the_limit_in_megabytes() -> None:
    url = "data:image/png;base64," + base64.b64encode(bytes(3 * 1024 * 1024)).decode()
    error = rejected(user_with_parts(image_part(url)), max_image_bytes=2 * 1024 * 1024)
    assert "2 MB" in error.message


def test_huge_image_is_refused_before_decoding() -> None:
    # Not valid base64 at all, but too long: the size check comes first.
    url = "data:image/png;base64," + "!" * (4 * MAX_IMAGE)
    assert rejected(user_with_parts(image_part(url))).code == "image_too_large"


@pytest.mark.parametrize("header", [png_header, jpeg_header, gif_header, webp_header],
                         ids=["png", "jpeg", "gif", "webp"])
def test_pixel_budget_counts_the_declared_size(header) -> None:
    assert parse(user_with_parts(image_part(data_url(header(10, 10)))),
                 max_image_pixels=100).images[0].data == header(10, 10)
    error = rejected(user_with_parts(image_part(data_url(header(10, 11)))),
                     max_image_pixels=100)
    assert error.code == "image_too_large"
    assert error.param == "messages[0].content[0].image_url.url"
    assert "10x11 pixels" in error.message and "PROXY_MAX_IMAGE_MEGAPIXELS" in error.message


def test_a_decompression_bomb_is_refused_by_its_header() -> None:
    # 30000x30000 pixels in a few bytes: what made a Codex child take 3.4 GB (issue 17).
    error = rejected(user_with_parts(image_part(data_url(png_header(30000, 30000)))))
    assert error.code == "image_too_large"
    assert "30000x30000" in error.message and "50,000,000" in error.message


@pytest.mark.parametrize("data", [
    b"\x89PNG\r\n\x1a\n" + bytes(40), png_header(0, 5), b"\xff\xd8\xff\xe0" + bytes(20),
])
def test_an_image_whose_size_cannot_be_read_is_refused(data: bytes) -> None:
    error = rejected(user_with_parts(image_part(data_url(data))))
    assert error.code == "invalid_image"


def test_the_request_s_images_together_have_a_budget() -> None:
    image = png_header(4, 4) + bytes(300)
    parts = [image_part(data_url(image))] * 3
    assert len(parse(user_with_parts(*parts), max_images_bytes=3 * len(image)).images) == 3
    error = rejected(body_with(messages=[
        {"role": "user", "content": parts[:2]}, {"role": "user", "content": parts[:1]},
    ]), max_images_bytes=3 * len(image) - 1)
    assert error.code == "image_too_large"
    assert error.param == "messages[1].content[0].image_url.url"
    assert "PROXY_MAX_IMAGES_MB" in error.message


def test_the_number_of_images_is_bounded() -> None:
    parts = [image_part(data_url(png_header(1, 1)))] * 3
    assert len(parse(user_with_parts(*parts), max_images=3).images) == 3
    error = rejected(user_with_parts(*parts, parts[0]), max_images=3)
    assert error.param == "messages[0].content[3].image_url.url"
    assert error.code == "image_too_large"


@pytest.mark.parametrize("encoded", ["QQ==QUJD", "QUJDQQ==QUJD", "QQ=="[:3]])
def test_base64_padding_only_at_the_end(encoded: str) -> None:
    error = rejected(user_with_parts(image_part("data:image/png;base64," + encoded)))
    assert error.code == "invalid_image"


def test_large_images_decode_across_base64_slices() -> None:
    # Longer than one decoding slice (1 MiB of base64), with padding at the very end.
    image = png_header(8, 8) + bytes(range(256)) * 3000 + b"x"
    request = parse(user_with_parts(image_part(data_url(image))), max_image_bytes=1 << 21)
    assert request.images[0].data == image


# -- how many messages and parts ---------------------------------------------------------------


def test_the_number_of_messages_is_bounded() -> None:
    assert len(parse(body_with(messages=[USER_HI] * 5), max_messages=5).messages) == 5
    error = rejected(body_with(messages=[USER_HI] * 6), max_messages=5)
    assert error.param == "messages"
    assert error.code == "array_above_max_length"
    assert "6 messages" in error.message


def test_content_parts_and_tool_calls_together_are_bounded() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "a"}] * 3},
        {"role": "assistant", "content": None, "tool_calls": [call] * 2},
    ]
    assert len(parse(body_with(messages=messages), max_parts=5).messages) == 2
    error = rejected(body_with(messages=[*messages, {"role": "user", "content": [
        {"type": "text", "text": "b"}]}]), max_parts=5)
    assert error.param == "messages[2].content"
    assert error.code == "array_above_max_length"


# -- JSON that reaches Codex -------------------------------------------------------------------


def nested(levels: int) -> Any:
    """A JSON object nested `levels` deep (itself the first level)."""
    value: Any = {"type": "string"}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_nested_counts_its_levels() -> None:
    assert nested(1) == {"type": "string"}
    assert nested(3) == {"a": {"a": {"type": "string"}}}


def test_tool_parameters_nested_up_to_the_budget_are_accepted() -> None:
    tool = function_tool("deep", parameters=nested(MAX_JSON_DEPTH))
    assert parse(body_with(tools=[tool])).tools[0].parameters == nested(MAX_JSON_DEPTH)


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 124, 200])
def test_tool_parameters_nested_deeper_than_codex_reads_are_refused(levels: int) -> None:
    tools = [WEATHER_TOOL, function_tool("deep", parameters=nested(levels))]
    error = rejected(body_with(tools=tools))
    assert error.param == "tools[1].function.parameters"
    assert error.code == "nesting_too_deep"
    assert str(MAX_JSON_DEPTH) in error.message


def test_an_enum_of_nested_arrays_counts_too() -> None:
    # The issue's other reproducer: an enum of 200 nested arrays.
    enum: Any = []
    for _ in range(200):
        enum = [enum]
    error = rejected(body_with(tools=[function_tool("f", parameters={"enum": enum})]))
    assert error.code == "nesting_too_deep"


def test_tool_call_arguments_sent_as_objects_have_the_same_budget() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": nested(65)}}
    error = rejected(body_with(messages=[
        USER_HI, {"role": "assistant", "content": None, "tool_calls": [call]}]))
    assert error.param == "messages[1].tool_calls[0].function.arguments"
    assert error.code == "nesting_too_deep"


def test_arguments_deeper_than_json_dumps_recursion_are_a_400() -> None:
    # Parsed fine by the C scanner, but json.dumps would raise RecursionError (a 500).
    arguments = "[" * 950 + "]" * 950
    raw = ('{"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "c", '
           '"function": {"name": "f", "arguments": ' + arguments + '}}]}]}').encode()
    with pytest.raises(ApiError) as caught:
        read_chat_request(raw, default_model="gpt-5", limits=InputLimits())
    assert caught.value.code == "nesting_too_deep"


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**30, float("inf"), float("nan")])
def test_numbers_codex_cannot_read_are_refused(number: Any) -> None:
    tool = function_tool("f", parameters={"type": "integer", "maximum": number})
    error = rejected(body_with(tools=[tool]))
    assert error.param == "tools[0].function.parameters"
    assert error.code == "number_out_of_range"


@pytest.mark.parametrize("number", [2**64 - 1, -(2**63), 0, 1.5e308, True])
def test_numbers_codex_reads_are_kept(number: Any) -> None:
    tool = function_tool("f", parameters={"type": "integer", "maximum": number})
    assert parse(body_with(tools=[tool])).tools[0].parameters["maximum"] == number


# -- the body's bytes --------------------------------------------------------------------------


def read(raw: bytes | str, *, interruptible: bool = False) -> ChatRequest:
    data = raw.encode() if isinstance(raw, str) else raw
    return read_chat_request(data, default_model="gpt-5", limits=InputLimits(),
                             interruptible=interruptible)[0]


def refused(raw: bytes | str, *, interruptible: bool = False) -> ApiError:
    with pytest.raises(ApiError) as caught:
        read(raw, interruptible=interruptible)
    assert caught.value.status == 400
    return caught.value


BOTH_SCANNERS = pytest.mark.parametrize("interruptible", [False, True],
                                        ids=["c-scanner", "python-scanner"])


@BOTH_SCANNERS
def test_both_scanners_read_the_same_request(interruptible: bool) -> None:
    body = json.dumps(body_with(
        messages=[{"role": "system", "content": "Be brief. 😀"}, USER_HI,
                  {"role": "user", "content": [{"type": "text", "text": "x\u00e9\n"}]}],
        tools=[WEATHER_TOOL], temperature=0.2, stream=True))
    assert read(body, interruptible=interruptible) == parse(json.loads(body))


@BOTH_SCANNERS
@pytest.mark.parametrize("levels", [1_100, 100_000])
def test_a_body_nested_past_the_parser_s_recursion_is_a_400(interruptible, levels) -> None:
    raw = '{"messages": [], "metadata": ' + "[" * levels + "]" * levels + "}"
    error = refused(raw, interruptible=interruptible)
    assert error.code == "nesting_too_deep"
    assert error.param is None


@BOTH_SCANNERS
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinities_are_not_json(interruptible, constant) -> None:
    error = refused('{"messages": [], "temperature": ' + constant + "}",
                    interruptible=interruptible)
    assert error.code == "invalid_json"
    assert constant.lstrip("-") in error.message


@BOTH_SCANNERS
@pytest.mark.parametrize(("body", "param"), [
    ('{"model": "gpt\\ud800", "messages": [{"role": "user", "content": "hi"}]}', "model"),
    ('{"messages": [{"role": "user", "content": "a\\udfffb"}]}', "messages[0].content"),
    ('{"messages": [{"role": "user", "content": [{"type": "text", "text": "ok"}, '
     '{"type": "text", "text": "\\uDBFF"}]}]}', "messages[0].content[1].text"),
    ('{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", '
     '"function": {"name": "f", "parameters": {"properties": {"\\ud800": {}}}}}]}',
     "tools[0].function.parameters.properties"),
    ('{"messages": [{"role": "user", "content": "hi"}], "\\udc00": 1}', None),
    ('{"messages": [{"role": "user", "content": "hi"}], "user": "\\ude00\\ud83d"}', "user"),
])
def test_lone_surrogates_anywhere_are_refused_naming_the_field(interruptible, body,
                                                                param) -> None:
    error = refused(body, interruptible=interruptible)
    assert error.code == "invalid_string"
    assert error.param == param


def test_a_large_body_may_hold_so_many_json_values() -> None:
    # Counted: the body, "messages", its message and the message's two strings, "metadata",
    # and each number in it.
    def body(numbers: int) -> str:
        return json.dumps({"messages": [USER_HI], "metadata": [0] * numbers})

    assert read(body(MAX_BODY_VALUES - 6), interruptible=True).messages[0].text == "hi"
    error = refused(body(MAX_BODY_VALUES - 5), interruptible=True)
    assert (error.code, error.param) == ("too_many_values", None)
    assert "250,000" in error.message


def test_paired_surrogate_escapes_are_text() -> None:
    raw = '{"messages": [{"role": "user", "content": "\\ud83d\\ude00 and \\\\ud800"}]}'
    assert read(raw).messages[0].text == "😀 and \\ud800"


def test_utf8_encoded_surrogates_are_not_utf8() -> None:
    raw = b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'
    assert refused(raw).code == "invalid_json"


# -- stream options ----------------------------------------------------------------------------


def test_stream_and_include_usage() -> None:
    request = parse(body_with(stream=True, stream_options={"include_usage": True}))
    assert request.stream is True
    assert request.include_usage is True


def test_include_usage_defaults_to_false() -> None:
    assert parse(body_with(stream=True, stream_options={})).include_usage is False
    assert parse(body_with(stream=True, stream_options=None)).include_usage is False
    assert parse(body_with(stream=None)).stream is False


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"stream": "true"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"stream_options": True}, "stream_options"),
        ({"stream_options": [1]}, "stream_options"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
        ({"parallel_tool_calls": 0}, "parallel_tool_calls"),
        ({"n": 2}, "n"),
        ({"n": 0}, "n"),
        ({"n": True}, "n"),
        ({"n": "1"}, "n"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"functions": [], "function_call": "auto"}, "functions"),
    ],
)
def test_bad_top_level_fields_are_rejected(fields: dict[str, Any], param: str) -> None:
    assert rejected(body_with(**fields)).param == param


def test_n_of_one_is_accepted() -> None:
    assert parse(body_with(n=1)).messages[0].text == "hi"


def test_ignored_knobs_are_accepted() -> None:
    request = parse(body_with(
        temperature=0.2, top_p=0.9, presence_penalty=1, frequency_penalty=-1, max_tokens=10,
        max_completion_tokens=20, seed=7, stop=["\n"], user="u-1", logit_bias={"1": 2},
        response_format={"type": "text"}, metadata={"a": "b"}, store=False, logprobs=False,
        service_tier="auto",
    ))
    assert request == parse(body_with())


def test_parallel_tool_calls_false_is_kept() -> None:
    assert parse(body_with(parallel_tool_calls=False)).parallel_tool_calls is False


# -- reasoning effort --------------------------------------------------------------------------


@pytest.mark.parametrize("effort", KNOWN_EFFORTS)
def test_every_known_reasoning_effort(effort: str) -> None:
    assert parse(body_with(reasoning_effort=effort)).reasoning_effort == effort


def test_reasoning_effort_is_normalised() -> None:
    assert parse(body_with(reasoning_effort=" HIGH ")).reasoning_effort == "high"


def test_reasoning_object_effort() -> None:
    assert parse(body_with(reasoning={"effort": "low"})).reasoning_effort == "low"
    assert parse(body_with(reasoning={"summary": "auto"})).reasoning_effort is None


def test_reasoning_effort_wins_over_reasoning_object() -> None:
    request = parse(body_with(reasoning_effort="minimal", reasoning={"effort": "high"}))
    assert request.reasoning_effort == "minimal"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"reasoning_effort": ""}, "reasoning_effort"),
        ({"reasoning_effort": 3}, "reasoning_effort"),
        ({"reasoning": {"effort": "huge"}}, "reasoning.effort"),
        ({"reasoning": {"effort": ["high"]}}, "reasoning.effort"),
    ],
)
def test_unknown_reasoning_effort_is_rejected(fields: dict[str, Any], param: str) -> None:
    error = rejected(body_with(**fields))
    assert error.param == param
    assert error.code == "invalid_reasoning_effort"
    assert "medium" in error.message


@pytest.mark.parametrize("reasoning", ["high", ["high"], 1])
def test_reasoning_must_be_an_object(reasoning: Any) -> None:
    assert rejected(body_with(reasoning=reasoning)).param == "reasoning"


# -- tools and tool_choice ---------------------------------------------------------------------


def test_tools_are_parsed() -> None:
    request = parse(body_with(tools=[
        WEATHER_TOOL,
        {"type": "function", "function": {"name": "no-params_2", "strict": True}},
    ]))
    assert request.tools == (
        FunctionTool(
            "get_weather",
            "Weather for a city",
            {"type": "object", "properties": {"city": {"type": "string"}}},
        ),
        FunctionTool("no-params_2", "", {"type": "object", "properties": {}}, strict=True),
    )
    assert request.offered_tools == request.tools


def test_null_description_and_parameters_get_defaults() -> None:
    tool = {"type": "function",
            "function": {"name": "f", "description": None, "parameters": None, "strict": None}}
    assert parse(body_with(tools=[tool])).tools == (
        FunctionTool("f", "", {"type": "object", "properties": {}}, strict=False),
    )


def test_empty_tools_list_is_no_tools() -> None:
    assert parse(body_with(tools=[])).tools == ()


def function_tool(name: Any, **function: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, **function}}


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ({"type": "function"}, "tools"),
        ("get_weather", "tools"),
        (["get_weather"], "tools[0].type"),
        ([{"function": {"name": "f"}}], "tools[0].type"),
        ([{"type": "web_search"}], "tools[0].type"),
        ([WEATHER_TOOL, {"type": "custom", "custom": {"name": "x"}}], "tools[1].type"),
        ([{"type": "function"}], "tools[0].function"),
        ([{"type": "function", "function": "f"}], "tools[0].function"),
        ([function_tool(None)], "tools[0].function.name"),
        ([function_tool("")], "tools[0].function.name"),
        ([function_tool("has space")], "tools[0].function.name"),
        ([function_tool("dotted.name")], "tools[0].function.name"),
        ([function_tool("x" * 65)], "tools[0].function.name"),
        ([function_tool(12)], "tools[0].function.name"),
        ([function_tool("f", description=5)], "tools[0].function.description"),
        ([function_tool("f", parameters="{}")], "tools[0].function.parameters"),
        ([function_tool("f", parameters=[])], "tools[0].function.parameters"),
        ([function_tool("f", strict="yes")], "tools[0].function.strict"),
        ([function_tool("f"), function_tool("f")], "tools[1].function.name"),
    ],
)
def test_bad_tools_are_rejected(tools: Any, param: str) -> None:
    assert rejected(body_with(tools=tools)).param == param


def test_duplicate_tool_name_message() -> None:
    error = rejected(body_with(tools=[function_tool("f"), function_tool("f")]))
    assert "'f'" in error.message
    assert "twice" in error.message


def test_tool_name_of_64_characters_is_accepted() -> None:
    assert parse(body_with(tools=[function_tool("a" * 64)])).tools[0].name == "a" * 64


@pytest.mark.parametrize("choice", [None, "auto"])
def test_tool_choice_auto(choice: Any) -> None:
    request = parse(body_with(tools=[WEATHER_TOOL], tool_choice=choice))
    assert request.tool_choice == "auto"
    assert request.forced_tool is None
    assert [tool.name for tool in request.offered_tools] == ["get_weather"]


def test_tool_choice_auto_without_tools() -> None:
    assert parse(body_with(tool_choice="auto")).tool_choice == "auto"


def test_tool_choice_none_offers_no_tools() -> None:
    request = parse(body_with(tools=[WEATHER_TOOL], tool_choice="none"))
    assert request.tool_choice == "none"
    assert len(request.tools) == 1
    assert request.offered_tools == ()


def test_tool_choice_none_without_tools() -> None:
    assert parse(body_with(tool_choice="none")).tool_choice == "none"


def test_tool_choice_required() -> None:
    request = parse(body_with(tools=[WEATHER_TOOL], tool_choice="required"))
    assert request.tool_choice == "required"
    assert request.offered_tools == request.tools


def test_tool_choice_required_needs_tools() -> None:
    error = rejected(body_with(tool_choice="required"))
    assert error.param == "tool_choice"
    assert "tools" in error.message


def test_tool_choice_function_offers_only_that_tool() -> None:
    request = parse(body_with(
        tools=[WEATHER_TOOL, function_tool("other")],
        tool_choice={"type": "function", "function": {"name": "other"}},
    ))
    assert request.tool_choice == "function"
    assert request.forced_tool == "other"
    assert [tool.name for tool in request.offered_tools] == ["other"]


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ({"type": "function", "function": {"name": "missing"}}, "tool_choice.function.name"),
        ({"type": "function", "function": {}}, "tool_choice.function.name"),
        ({"type": "function"}, "tool_choice.function.name"),
        ({"type": "function", "function": {"name": 1}}, "tool_choice.function.name"),
        ("always", "tool_choice"),
        ("", "tool_choice"),
        (True, "tool_choice"),
        ({"type": "allowed_tools"}, "tool_choice"),
        ({"function": {"name": "get_weather"}}, "tool_choice"),
    ],
)
def test_bad_tool_choice_is_rejected(choice: Any, param: str) -> None:
    assert rejected(body_with(tools=[WEATHER_TOOL], tool_choice=choice)).param == param


def test_tool_choice_function_without_tools_is_rejected() -> None:
    error = rejected(body_with(tool_choice={"type": "function", "function": {"name": "f"}}))
    assert error.param == "tool_choice.function.name"
    assert "'f'" in error.message


def test_error_body_has_openai_shape() -> None:
    error = rejected(body_with(n=3))
    assert error.body() == {
        "error": {
            "message": error.message,
            "type": "invalid_request_error",
            "param": "n",
            "code": None,
        }
    }
