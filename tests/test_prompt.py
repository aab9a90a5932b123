"""Unit tests for prompt.py: the transcript Codex reads, and the image file names."""

from __future__ import annotations

import pytest

from codex_openai_proxy.chat_request import ImagePart, Message, TextPart, ToolCall
from codex_openai_proxy.prompt import (
    TRANSCRIPT_PREAMBLE,
    NumberedImage,
    number_images,
    render_instructions,
    render_prompt,
)

PNG = ImagePart("image/png", b"png-bytes")
JPEG = ImagePart("image/jpeg", b"jpeg-bytes")
WEBP = ImagePart("image/webp", b"webp-bytes")


def text(role: str, body: str, name: str | None = None) -> Message:
    return Message(role, (TextPart(body),), name)  # type: ignore[arg-type]


def test_a_lone_user_message_is_just_its_text() -> None:
    # No transcript to explain, so no header either: the question is the prompt.
    assert render_prompt([text("user", "Hello there")]) == "Hello there"


def test_single_message_has_no_preamble() -> None:
    prompt = render_prompt([text("user", "hi")])
    assert TRANSCRIPT_PREAMBLE not in prompt


def test_several_messages_get_the_preamble_and_keep_their_order() -> None:
    messages = [
        text("system", "Be terse."),
        text("user", "What is 2+2?"),
        text("assistant", "4"),
        text("user", "And 3+3?"),
    ]
    assert render_prompt(messages) == "\n\n".join([
        TRANSCRIPT_PREAMBLE,
        "[system]\nBe terse.",
        "[user]\nWhat is 2+2?",
        "[assistant]\n4",
        "[user]\nAnd 3+3?",
    ])


@pytest.mark.parametrize("role", ["system", "developer", "assistant"])
def test_role_header(role: str) -> None:
    assert render_prompt([text(role, "x")]) == f"[{role}]\nx"


def test_user_header_in_a_transcript() -> None:
    assert render_prompt([text("assistant", "a"), text("user", "x")]).endswith("[user]\nx")


def test_name_goes_into_the_header() -> None:
    assert render_prompt([text("user", "hi", name="alice")]) == "[user alice]\nhi"


def test_empty_name_is_left_out() -> None:
    assert render_prompt([text("assistant", "a"), text("user", "hi", name="")]).endswith(
        "\n\n[user]\nhi")


def test_text_parts_are_joined_without_separator() -> None:
    message = Message("user", (TextPart("Hello, "), TextPart("world"), TextPart("!")))
    assert render_prompt([message]) == "Hello, world!"
    assert render_prompt([text("system", "s"), message]).endswith("[user]\nHello, world!")


def test_multiline_text_is_kept_verbatim() -> None:
    body = "line one\n\n[user]\nnot a header\n"
    assert render_prompt([text("user", body)]) == body
    assert render_prompt([text("system", "s"), text("user", body)]).endswith("[user]\n" + body)


def test_empty_message_is_header_only() -> None:
    assert render_prompt([text("assistant", "")]) == "[assistant]"
    assert render_prompt([Message("assistant", ())]) == "[assistant]"
    assert render_prompt([Message("user", ())]) == ""


def test_a_system_message_makes_a_transcript() -> None:
    messages = [text("system", "rules"), text("user", "hi")]
    assert render_prompt(messages).startswith(TRANSCRIPT_PREAMBLE + "\n\n[system]\nrules")


def test_render_instructions_joins_system_and_developer_messages() -> None:
    messages = [
        text("system", "S"), text("user", "U1"), text("developer", "D"),
        text("assistant", "A"), text("user", "U2"),
    ]
    assert render_instructions(messages) == "S\n\nD"


def test_render_instructions_without_system_messages_is_empty() -> None:
    assert render_instructions([text("user", "hi")]) == ""


# -- tools -------------------------------------------------------------------------------------


def test_tool_call_and_result_are_spelled_out() -> None:
    messages = [
        text("user", "Weather in Paris?"),
        Message("assistant", (), tool_calls=(
            ToolCall("call_abc", "get_weather", '{"city": "Paris"}'),
        )),
        Message("tool", (TextPart('{"temp": 21}'),), tool_call_id="call_abc"),
    ]
    assert render_prompt(messages) == "\n\n".join([
        TRANSCRIPT_PREAMBLE,
        "[user]\nWeather in Paris?",
        '[assistant]\n[assistant called tool get_weather, call id call_abc, arguments:]\n'
        '{"city": "Paris"}',
        '[tool result of get_weather, call id call_abc]\n{"temp": 21}',
    ])


def test_assistant_text_comes_before_its_tool_calls() -> None:
    message = Message(
        "assistant",
        (TextPart("Checking both."),),
        tool_calls=(ToolCall("c1", "f", "{}"), ToolCall("c2", "g", '{"x":1}')),
    )
    assert render_prompt([message]) == (
        "[assistant]\n"
        "Checking both.\n"
        "[assistant called tool f, call id c1, arguments:]\n"
        "{}\n"
        "[assistant called tool g, call id c2, arguments:]\n"
        '{"x":1}'
    )


def test_each_tool_result_names_its_own_tool() -> None:
    messages = [
        Message("assistant", (), tool_calls=(ToolCall("c1", "alpha", "{}"),
                                             ToolCall("c2", "beta", "{}"))),
        Message("tool", (TextPart("B"),), tool_call_id="c2"),
        Message("tool", (TextPart("A"),), tool_call_id="c1"),
    ]
    blocks = render_prompt(messages).split("\n\n")
    assert blocks[-2] == "[tool result of beta, call id c2]\nB"
    assert blocks[-1] == "[tool result of alpha, call id c1]\nA"


def test_tool_result_for_an_unknown_call() -> None:
    message = Message("tool", (TextPart("r"),), tool_call_id="call_zzz")
    assert render_prompt([message]) == "[tool result of unknown tool, call id call_zzz]\nr"


def test_tool_result_with_empty_content_is_header_only() -> None:
    messages = [
        Message("assistant", (), tool_calls=(ToolCall("c", "f", ""),)),
        Message("tool", (TextPart(""),), tool_call_id="c"),
    ]
    assert render_prompt(messages) == (
        TRANSCRIPT_PREAMBLE
        + "\n\n[assistant]\n[assistant called tool f, call id c, arguments:]\n"
        + "\n\n[tool result of f, call id c]"
    )


# -- images ------------------------------------------------------------------------------------


def test_number_images_in_order_with_extensions() -> None:
    messages = [
        Message("user", (TextPart("a"), PNG, JPEG)),
        text("assistant", "ok"),
        Message("user", (WEBP,)),
    ]
    assert number_images(messages) == (
        NumberedImage("image-1.png", PNG),
        NumberedImage("image-2.jpg", JPEG),
        NumberedImage("image-3.webp", WEBP),
    )


def test_number_images_without_images() -> None:
    assert number_images([text("user", "hi")]) == ()


def test_image_placeholders_use_the_numbered_names() -> None:
    messages = [
        Message("user", (TextPart("Compare "), PNG, TextPart(" with "), JPEG)),
        text("assistant", "Sure."),
        Message("user", (WEBP, TextPart(" too"))),
    ]
    names = [numbered.filename for numbered in number_images(messages)]
    assert render_prompt(messages) == "\n\n".join([
        TRANSCRIPT_PREAMBLE,
        f"[user]\nCompare [image {names[0]}] with [image {names[1]}]",
        "[assistant]\nSure.",
        f"[user]\n[image {names[2]}] too",
    ])
    assert names == ["image-1.png", "image-2.jpg", "image-3.webp"]


def test_image_only_message() -> None:
    assert render_prompt([Message("user", (PNG,))]) == "[image image-1.png]"
