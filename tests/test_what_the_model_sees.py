"""What the model sees is what the client sent: the real Codex 0.169.0 against the mock
upstream, whose recorded request body is the truth about the model's input.

- Only the client's tools, as plain function tools under their own names, on every model,
  `code_mode_only` ones included; none of Codex's own tools or instructions.
- The conversation as native Responses items, in order; text parts apart; images as images.
- One `prompt_cache_key` per conversation, and each request's input extending the previous
  one's byte for byte, so that the backend's prefix cache can hit.
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from typing import Any

import pytest
from test_real_codex import PNG
from test_tool_calls import ROO_SYSTEM_PROMPT, ROO_TOOLS, stream_tool_calls

from conftest import chat_body, open_stream

pytestmark = pytest.mark.real_codex

#: One model of each kind: "responses lite" with code mode in its catalog entry, a plain one,
#: and one the catalog does not know.
MODELS = ["gpt-6.1-sol", "gpt-5.5", "gpt-5"]
ROO_TOOL_NAMES = sorted(tool["function"]["name"] for tool in ROO_TOOLS)


def messages_of(body: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(role, texts) of each message item the model was given."""
    return [(item["role"], [part.get("text", part.get("type")) for part in item["content"]])
            for item in body["input"] if item.get("type") == "message"]


def kinds_of(body: dict[str, Any]) -> list[str]:
    return [item.get("role") or item["type"] if item["type"] == "message" else item["type"]
            for item in body["input"]]


@pytest.mark.parametrize("model", MODELS)
async def test_a_plain_request_is_only_the_clients_words(start_real_proxy, mock_upstream,
                                                         model):
    proxy = await start_real_proxy(engine="app-server")
    body = {"model": model, "messages": [{"role": "system", "content": "Answer briefly."},
                                         {"role": "user", "content": "Say hi"}]}
    response = await proxy.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    [upstream] = mock_upstream.requests
    assert upstream.tool_names() == []
    assert messages_of(upstream.body) == [("developer", ["Answer briefly."]),
                                          ("user", ["Say hi"])]
    assert kinds_of(upstream.body) == ["developer", "user"]
    assert "instructions" not in upstream.body
    # Codex's own harness is ~40-55 KB; what is left is the words, the model's settings and
    # Codex's client metadata.
    assert len(json.dumps(upstream.body)) < 3000


def roo_conversation(first_task: str = "Fix the bug.") -> list[dict[str, Any]]:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    return [
        {"role": "system", "content": [{"type": "text", "text": ROO_SYSTEM_PROMPT,
                                        "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [
            {"type": "text", "text": f"<task>\n{first_task}\n</task>"},
            {"type": "text", "text": "<environment_details>\n# Current Time\n2026-11-24"
                                     "\n</environment_details>"},
            {"type": "image_url", "image_url": {"url": url}}]},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [{
            "id": "call_read", "type": "function", "function": {
                "name": "read_file",
                "arguments": '{"files":[{"path":"src/app.py","line_ranges":null}]}'}}]},
        {"role": "tool", "tool_call_id": "call_read",
         "content": "<file><path>src/app.py</path><content>1 | print(1)</content></file>"
                    " mock-scenario:tool_call"},
    ]


@pytest.mark.parametrize("model", ["gpt-6.1-sol", "gpt-5"])
async def test_a_roo_shaped_request_is_native_and_offers_exactly_the_clients_tools(
        start_real_proxy, mock_upstream, model):
    mock_upstream.tool_calls = [("attempt_completion", {"result": "Done."})]
    proxy = await start_real_proxy(engine="app-server")
    body = {"model": model, "stream": True, "stream_options": {"include_usage": True},
            "temperature": 0, "tools": ROO_TOOLS, "tool_choice": "auto",
            "parallel_tool_calls": True, "messages": roo_conversation()}
    async with open_stream(proxy.client, body) as s:
        events = await s.read_to_end()
    [upstream] = mock_upstream.requests
    # Exactly the client's tools, each a plain function under its own name, and nothing else.
    assert sorted(upstream.tool_names()) == ROO_TOOL_NAMES
    assert sorted(upstream.function_names()) == ROO_TOOL_NAMES
    offered = {tool["name"]: tool for tool in upstream.tools()}
    assert offered["read_file"]["description"] == "Read one or more files."
    # The history, native and in order: the system prompt as the one developer message, the
    # user's parts apart, the image an image, the call and its result as items.
    items = [item for item in upstream.body["input"] if item["type"] != "additional_tools"]
    assert [item["type"] for item in items] == [
        "message", "message", "message", "function_call", "function_call_output"]
    system, user, assistant, call, output = items
    assert system["role"] == "developer"
    assert [part["text"] for part in system["content"]] == [ROO_SYSTEM_PROMPT]
    assert user["role"] == "user"
    assert [part["type"] for part in user["content"]] == ["input_text", "input_text",
                                                          "input_image"]
    assert user["content"][0]["text"] == "<task>\nFix the bug.\n</task>"
    assert base64.b64decode(user["content"][2]["image_url"].split(",", 1)[1]) == PNG
    assert assistant["role"] == "assistant"
    assert assistant["content"][0]["text"] == "Let me look."
    assert (call["call_id"], call["name"]) == ("call_read", "read_file")
    assert call["arguments"] == '{"files":[{"path":"src/app.py","line_ranges":null}]}'
    assert output["call_id"] == "call_read" and output["output"].startswith("<file>")
    # The mock's model calls the tool the way the offered tool mode allows; the client gets
    # its own tool back.
    [tool_call] = stream_tool_calls(events)
    assert tool_call["function"]["name"] == "attempt_completion"
    assert json.loads(tool_call["function"]["arguments"]) == {"result": "Done."}
    assert events[-3]["choices"][0]["finish_reason"] == "tool_calls"


def serialized(items: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(item, ensure_ascii=False) for item in items]


async def test_a_six_turn_conversation_has_one_cache_key_and_a_growing_prefix(
        start_real_proxy, mock_upstream):
    mock_upstream.tool_calls = [("read_file", {"files": [{"path": "a.py", "line_ranges": None}]})]
    proxy = await start_real_proxy(engine="app-server")
    messages = roo_conversation()[:2]
    messages[1]["content"][0]["text"] += " mock-scenario:tool_call"
    for turn in range(6):
        if turn == 5:  # the last answer is text
            messages[-1]["content"] += " mock-scenario:text"
        body = {"model": "gpt-6.1-sol", "tools": ROO_TOOLS, "messages": messages}
        response = await proxy.client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        message = response.json()["choices"][0]["message"]
        if turn == 5:
            assert message["content"] == "Hello from the mock."
            break
        [call] = message["tool_calls"]
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": f"1 | line {turn}"},
        ]
    requests = mock_upstream.requests
    assert len(requests) == 6
    keys = {request.body["prompt_cache_key"] for request in requests}
    assert len(keys) == 1
    uuid.UUID(keys.pop())  # Codex's thread id: the conversation's own
    for before, after in itertools.pairwise(requests):
        old, new = serialized(before.body["input"]), serialized(after.body["input"])
        assert len(new) > len(old)
        assert new[:len(old)] == old, "what the model saw before is a prefix of what it sees now"
    # Another conversation (another task) goes up under another key.
    other = roo_conversation("Write the docs.")[:2]
    response = await proxy.client.post("/v1/chat/completions",
                                       json={"model": "gpt-6.1-sol", "messages": other})
    assert response.status_code == 200
    assert mock_upstream.requests[-1].body["prompt_cache_key"] != requests[0].body[
        "prompt_cache_key"]


@pytest.mark.parametrize("content", ["", [{"type": "text", "text": ""}]])
async def test_an_assistant_messages_empty_text_is_no_message(start_real_proxy, mock_upstream,
                                                              content):
    # A message rebuilt from a stream (LiteLLM's stream_chunk_builder, many clients' own code)
    # has the stream's first `content: ""`; the model made only its calls, and sees only them.
    proxy = await start_real_proxy(engine="app-server")
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    response = await proxy.client.post("/v1/chat/completions", json={
        "model": "gpt-5.5", "tools": [tool], "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": content, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}]})
    assert response.status_code == 200, response.text
    [upstream] = mock_upstream.requests
    assert kinds_of(upstream.body) == ["user", "function_call", "function_call_output"]


async def test_a_tool_named_like_codexs_own_reaches_the_model_and_comes_back_by_its_name(
        start_real_proxy, mock_upstream):
    # Codex 0.169.0 silently leaves out a dynamic tool named `exec_command` or
    # `shell_command`, names it keeps for its own shell tools. The model is offered it as
    # `exec_command_` (the history says so too), and the client gets its call by its own name.
    tools = [{"type": "function", "function": {
        "name": name, "description": f"The client's {name}.",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}}
        for name in ("exec_command", "shell_command", "exec_command_")]
    mock_upstream.tool_calls = [("exec_command__", {"cmd": "ls"})]
    proxy = await start_real_proxy(engine="app-server")
    messages = [{"role": "user", "content": "List the files. mock-scenario:tool_call"}]
    response = await proxy.client.post("/v1/chat/completions", json={
        "model": "gpt-5.5", "tools": tools, "messages": messages})
    assert response.status_code == 200, response.text
    [call] = response.json()["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "exec_command"
    assert json.loads(call["function"]["arguments"]) == {"cmd": "ls"}
    messages += [{"role": "assistant", "content": None, "tool_calls": [call]},
                 {"role": "tool", "tool_call_id": call["id"], "content": "a.py"}]
    response = await proxy.client.post("/v1/chat/completions", json={
        "model": "gpt-5.5", "tools": tools, "messages": messages})
    assert response.status_code == 200, response.text
    first, second = mock_upstream.requests
    assert sorted(first.tool_names()) == ["exec_command_", "exec_command__", "shell_command_"]
    offered = {tool["name"]: tool["description"] for tool in first.tools()}
    assert offered["exec_command__"] == "The client's exec_command."
    assert offered["exec_command_"] == "The client's exec_command_."
    assert [item["name"] for item in second.body["input"]
            if item["type"] == "function_call"] == ["exec_command__"]


async def test_response_format_json_schema_reaches_the_upstream_as_the_output_format(
        start_real_proxy, mock_upstream):
    proxy = await start_real_proxy(engine="app-server")
    schema = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"], "additionalProperties": False}
    body = chat_body(model="gpt-5.5", response_format={
        "type": "json_schema", "json_schema": {"name": "reply", "strict": True,
                                               "schema": schema}})
    response = await proxy.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    [upstream] = mock_upstream.requests
    text_format = upstream.body["text"]["format"]
    assert text_format["type"] == "json_schema" and text_format["schema"] == schema
    assert text_format["strict"] is True  # Codex always asks for strict output


async def test_cached_tokens_are_reported_as_roo_code_reads_them(start_real_proxy,
                                                                 mock_upstream):
    proxy = await start_real_proxy(engine="app-server")
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    usage = response.json()["usage"]
    assert usage["cache_read_input_tokens"] == usage["prompt_tokens_details"][
        "cached_tokens"] == 2

