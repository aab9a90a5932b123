"""Native tool calling (what Roo Code speaks), with the real Codex and the mock upstream.

The client's `tools` become Codex app-server dynamic tools; the model's `function_call`s come
back as OpenAI `tool_calls`, and the answer (and the Codex child) ends there: the results
arrive with the client's next request.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import trio

from conftest import API_KEY, REPO, chat_body, choices, delta, open_stream

pytestmark = pytest.mark.real_codex

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a time zone.",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}
# Nested objects, arrays, unicode, escapes: they must come back exactly as the model wrote them.
ARGS = {"city": "Zürich", "days": [1, 2, {"hourly": True, "note": "naïve \"quoted\" \\ ✓"}],
        "units": None}


def tool_request(**extra):
    return chat_body("What's the weather in Zürich?", tools=[WEATHER, TIME], **extra)


def stream_tool_calls(events):
    return [call for e in events if choices(e) for call in delta(e).get("tool_calls") or []]


async def test_a_streamed_tool_call(start_real_proxy, mock_upstream):
    mock_upstream.scenario = "tool_call"
    mock_upstream.tool_calls = [("get_weather", ARGS)]
    proxy = await start_real_proxy()
    body = tool_request(stream_options={"include_usage": True}, tool_choice="auto")
    async with open_stream(proxy.client, body) as s:
        events = await s.read_to_end()
    assert delta(events[0]) == {"role": "assistant", "content": ""}
    [call] = stream_tool_calls(events)
    # The first (here: only) chunk of the call carries its id and name, as Roo Code needs.
    assert call["index"] == 0 and call["id"] == "call_1" and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"] == json.dumps(ARGS, ensure_ascii=False)
    assert json.loads(call["function"]["arguments"]) == ARGS
    finish, usage, done = events[-3:]
    assert finish["choices"][0]["finish_reason"] == "tool_calls"
    assert usage["choices"] == [] and usage["usage"]["prompt_tokens"] == 10
    assert usage["usage"]["total_tokens"] == 15
    assert done == "[DONE]"
    assert s.content == ""


async def test_a_non_streamed_tool_call(start_real_proxy, mock_upstream):
    mock_upstream.scenario = "tool_call"
    mock_upstream.tool_calls = [("get_weather", ARGS)]
    proxy = await start_real_proxy()
    response = await proxy.client.post("/v1/chat/completions", json=tool_request())
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [{
        "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps(ARGS, ensure_ascii=False)},
    }]
    assert response.json()["usage"]["completion_tokens"] == 5


async def test_words_before_the_call_are_content(start_real_proxy, mock_upstream):
    mock_upstream.scenario = "text_tool_call"
    mock_upstream.tool_calls = [("get_weather", {"city": "Paris"})]
    proxy = await start_real_proxy()
    response = await proxy.client.post("/v1/chat/completions", json=tool_request())
    message = response.json()["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"
    async with open_stream(proxy.client, tool_request()) as s:
        events = await s.read_to_end()
    assert s.content == "Let me check."
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(("parallel", "expected"), [(True, ["get_weather", "get_time"]),
                                                    (False, ["get_weather"])])
async def test_parallel_tool_calls(start_real_proxy, mock_upstream, parallel, expected):
    mock_upstream.scenario = "tool_call"
    mock_upstream.tool_calls = [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    mock_upstream.delta_delay_s = 0.2  # the second call comes later in the same response
    proxy = await start_real_proxy()
    async with open_stream(proxy.client, tool_request(parallel_tool_calls=parallel)) as s:
        events = await s.read_to_end()
    calls = stream_tool_calls(events)
    assert [c["function"]["name"] for c in calls] == expected
    assert [c["index"] for c in calls] == list(range(len(expected)))
    assert len({c["id"] for c in calls}) == len(expected)


async def test_only_the_clients_tools_are_offered(start_real_proxy, mock_upstream):
    proxy = await start_real_proxy()
    response = await proxy.client.post("/v1/chat/completions", json=tool_request())
    assert response.status_code == 200, response.text
    [upstream] = mock_upstream.requests
    # Codex's shell, web search, agents, goals, image viewer and user prompts are switched off.
    assert sorted(upstream.tool_names()) == ["get_time", "get_weather"]
    # And nothing but the client's own messages: no notes on Codex's skills, sandbox or cwd.
    messages = [(item["role"], part["text"]) for item in upstream.body["input"]
                for part in item.get("content") or []]
    assert messages == [("user", "What's the weather in Zürich?")]
    offered = {tool["name"]: tool for tool in upstream.body["tools"]}
    assert offered["get_weather"]["parameters"] == WEATHER["function"]["parameters"]
    assert offered["get_weather"]["description"] == "The weather in a city."


async def test_a_text_answer_under_auto_is_content_with_stop(start_real_proxy, mock_upstream):
    proxy = await start_real_proxy()
    response = await proxy.client.post("/v1/chat/completions", json=tool_request())
    choice = response.json()["choices"][0]
    assert choice["message"]["content"] == "Hello from the mock."
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop"


async def test_tool_choice_none_offers_no_tools(start_real_proxy, mock_upstream):
    proxy = await start_real_proxy()
    response = await proxy.client.post("/v1/chat/completions",
                                       json=tool_request(tool_choice="none"))
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert mock_upstream.requests[0].tool_names() == []


async def test_a_named_tool_choice_offers_only_that_tool(start_real_proxy, mock_upstream):
    mock_upstream.scenario = "tool_call"
    mock_upstream.tool_calls = [("get_time", {"tz": "CET"})]
    proxy = await start_real_proxy()
    body = tool_request(tool_choice={"type": "function", "function": {"name": "get_time"}})
    response = await proxy.client.post("/v1/chat/completions", json=body)
    assert response.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == (
        "get_time")
    assert mock_upstream.requests[0].tool_names() == ["get_time"]


async def test_required_with_a_text_answer_is_an_error_not_text(start_real_proxy, mock_upstream):
    proxy = await start_real_proxy()
    response = await proxy.client.post("/v1/chat/completions",
                                       json=tool_request(tool_choice="required"))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "tool_call_required"
    async with open_stream(proxy.client, tool_request(tool_choice="required")) as s:
        events = await s.read_to_end()
    assert events[-2]["error"]["code"] == "tool_call_required"
    assert "Hello from the mock." not in s.content


async def test_the_tool_result_reaches_the_model_on_the_next_request(start_real_proxy,
                                                                     mock_upstream):
    proxy = await start_real_proxy()
    history = [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "What's the weather in Zürich?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Zürich"}'}}]},
        {"role": "tool", "tool_call_id": "call_1",
         "content": [{"type": "text", "text": "Sunny, 21 °C"}]},
    ]
    body = {"messages": history, "tools": [WEATHER], "stream": False}
    response = await proxy.client.post("/v1/chat/completions", json=body)
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the mock."
    [upstream] = mock_upstream.requests
    seen = upstream.input_text()
    for expected in ("get_weather", "call_1", "Z\\u00fcrich" if "\\u00fc" in seen else "Zürich",
                     "Sunny, 21 °C" if "°" in seen else "Sunny, 21 \\u00b0C"):
        assert expected in seen
    assert seen.index("get_weather") < seen.index("Sunny")
    # A client with tools brings its own agent: its system prompt replaces Codex's.
    first = next(item for item in upstream.body["input"] if item["type"] == "message")
    texts = [part.get("text", "") for part in first.get("content") or []]
    assert first["role"] == "developer" and texts[0].startswith("You are a weather bot.")
    assert "Codex" not in texts[0]


@pytest.mark.parametrize(("tools", "param"), [
    ([{"type": "function", "function": {"name": "has space"}}], "tools[0].function.name"),
    ([{"type": "retrieval"}], "tools[0].type"),
    ([{"type": "function", "function": {"name": "f", "parameters": "x"}}],
     "tools[0].function.parameters"),
    ([WEATHER, WEATHER], "tools[1].function.name"),
])
async def test_bad_tool_definitions_get_400(start_real_proxy, mock_upstream, tools, param):
    proxy = await start_real_proxy()
    response = await proxy.client.post("/v1/chat/completions",
                                       json=chat_body(tools=tools))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert mock_upstream.requests == []


async def test_the_openai_npm_client_roo_code_uses(start_real_proxy, mock_upstream, tmp_path):
    mock_upstream.tool_calls = [("read_file", {"path": "README.md"})]
    proxy = await start_real_proxy()
    node_path = os.environ.get("CODEX_OPENAI_PROXY_TEST_NODE_PATH") or str(
        REPO / ".tools" / "node" / "node_modules")
    if not os.path.isdir(os.path.join(node_path, "openai")):
        pytest.fail(f"the openai npm package is not installed in {node_path}: "
                    "run bash scripts/test.sh")
    with trio.fail_after(60):
        result = await trio.run_process(
            ["node", str(REPO / "tests" / "node" / "openai_client.cjs"), proxy.url + "/v1",
             API_KEY],
            env={**os.environ, "NODE_PATH": node_path}, capture_stdout=True,
            capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    outcome = json.loads(result.stdout)
    tool_call, text = outcome["toolCall"], outcome["text"]
    assert tool_call["roles"] == ["assistant"]
    assert tool_call["toolCalls"] == [
        {"id": "call_1", "name": "read_file", "arguments": '{"path": "README.md"}'}]
    assert tool_call["finishReason"] == "tool_calls"
    assert tool_call["usage"]["prompt_tokens"] == 10
    assert text["content"] == "Hello from the mock."
    assert text["toolCalls"] == [] and text["finishReason"] == "stop"
    assert text["usage"]["total_tokens"] == 15


def roo_tool(name: str, description: str, **properties: dict) -> dict:
    """A tool in Roo Code's native format: strict, every property required, no extras."""
    return {"type": "function", "function": {
        "name": name, "description": description, "strict": True,
        "parameters": {"type": "object", "properties": properties,
                       "required": list(properties), "additionalProperties": False}}}


STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
ROO_TOOLS = [
    roo_tool("read_file", "Read one or more files.", files={"type": "array", "items": {
        "type": "object", "properties": {"path": STRING, "line_ranges": {
            "type": ["array", "null"], "items": STRING}},
        "required": ["path", "line_ranges"], "additionalProperties": False}}),
    roo_tool("write_to_file", "Write a whole file.", path=STRING, content=STRING,
             line_count={"type": "integer"}),
    roo_tool("apply_diff", "Apply a search/replace diff.", path=STRING, diff=STRING),
    roo_tool("execute_command", "Run a CLI command.", command=STRING, cwd=NULLABLE_STRING),
    roo_tool("search_files", "Regex search.", path=STRING, regex=STRING,
             file_pattern=NULLABLE_STRING),
    roo_tool("list_files", "List a directory.", path=STRING, recursive={"type": "boolean"}),
    roo_tool("list_code_definition_names", "List definitions.", path=STRING),
    roo_tool("insert_content", "Insert lines.", path=STRING, line={"type": "integer"},
             content=STRING),
    roo_tool("ask_followup_question", "Ask the user.", question=STRING, follow_up={
        "type": "array", "items": {"type": "object", "properties": {
            "text": STRING, "mode": NULLABLE_STRING}, "required": ["text", "mode"],
            "additionalProperties": False}}),
    roo_tool("attempt_completion", "Present the result.", result=STRING),
    roo_tool("switch_mode", "Switch mode.", mode_slug=STRING, reason=STRING),
    roo_tool("new_task", "Start a subtask.", mode=STRING, message=STRING, todos=NULLABLE_STRING),
    roo_tool("update_todo_list", "Replace the todo list.", todos=STRING),
]
# About the size of Roo Code's system prompt: role, rules, tool use guidelines, modes, system
# information, custom instructions.
ROO_SYSTEM_PROMPT = (
    "You are Roo, a highly skilled software engineer with extensive knowledge in many "
    "programming languages, frameworks, design patterns, and best practices.\n\n"
    + "".join(f"RULE {i}: Use the tools one at a time; wait for each result before going on; "
              f"never assume the outcome of a tool use. Paths are relative to /home/u/proj.\n"
              for i in range(300))
)


def roo_turn(task: str = "Fix the bug.") -> list[dict[str, Any]]:
    """Roo's messages one tool round trip into a task: its system prompt, the task and its
    environment details (two text parts), a read_file call and its result."""
    return [
        {"role": "system", "content": ROO_SYSTEM_PROMPT},
        {"role": "user", "content": [
            {"type": "text", "text": f"<task>\n{task}\n</task>"},
            {"type": "text", "text": "<environment_details>\n# Current Time\n2026-11-24"
                                     "\n</environment_details>"}]},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_read", "type": "function", "function": {
                "name": "read_file",
                "arguments": '{"files":[{"path":"src/app.py","line_ranges":null}]}'}}]},
        {"role": "tool", "tool_call_id": "call_read",
         "content": "<file><path>src/app.py</path><content>1 | print(1)</content></file>"},
    ]


async def test_a_request_shaped_like_roo_codes(start_real_proxy, mock_upstream):
    mock_upstream.tool_calls = [("attempt_completion", {"result": "Done: the bug is fixed."})]
    proxy = await start_real_proxy()
    assert len(ROO_SYSTEM_PROMPT) > 30_000
    body = {
        "model": "gpt-5", "temperature": 0, "reasoning_effort": "medium", "stream": True,
        "stream_options": {"include_usage": True}, "tools": ROO_TOOLS, "tool_choice": "auto",
        "parallel_tool_calls": True,
        "messages": roo_turn("Fix the bug. mock-scenario:tool_call"),
    }
    async with open_stream(proxy.client, body) as s:
        events = await s.read_to_end()
    assert not [line for line in s.raw_lines if line.startswith("event:")]
    [call] = stream_tool_calls(events)
    assert call["id"] and call["function"]["name"] == "attempt_completion"
    assert json.loads(call["function"]["arguments"]) == {"result": "Done: the bug is fixed."}
    assert events[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert events[-2]["usage"]["prompt_tokens"] == 10  # what Roo Code condenses history by
    [upstream] = mock_upstream.requests
    assert sorted(upstream.tool_names()) == sorted(t["function"]["name"] for t in ROO_TOOLS)
    assert upstream.body["reasoning"]["effort"] == "medium"
    system = upstream.body["input"][0]["content"][0]["text"]
    assert system == ROO_SYSTEM_PROMPT
    seen = upstream.input_text()
    assert "call_read" in seen and "print(1)" in seen


async def test_requests_with_tools_run_on_app_server_whatever_the_engine(start_real_proxy,
                                                                        mock_upstream):
    mock_upstream.tool_calls = [("get_weather", {"city": "Paris"})]
    proxy = await start_real_proxy(engine="exec")  # exec cannot take client tools
    body = {**tool_request(), "messages": [{"role": "user",
                                            "content": "Weather? mock-scenario:tool_call"}]}
    response = await proxy.client.post("/v1/chat/completions", json=body)
    assert response.json()["choices"][0]["finish_reason"] == "tool_calls"
    plain = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert plain.json()["choices"][0]["message"]["content"] == "Hello from the mock."
