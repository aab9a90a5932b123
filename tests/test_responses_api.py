"""`POST /v1/responses`: the OpenAI Responses API, streamed and not, with tools, on the real
Codex 0.169.0 against the mock upstream; its clients: the openai SDKs (Python and npm) and the
Codex CLI itself."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import openai
import pytest
import trio

from conftest import API_KEY, REPO, children_of, process_state, wait_dead

pytestmark = pytest.mark.real_codex

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "strict": True, "parameters": {
               "type": "object", "properties": {"city": {"type": "string"}},
               "required": ["city"], "additionalProperties": False}}


async def responses_proxy(start_real_proxy):
    return await start_real_proxy(engine="app-server")


async def read_events(response: Any) -> list[dict[str, Any]]:
    """The `data:` payloads of a Responses stream, each checked against its `event:` line."""
    events, kind = [], None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            event = json.loads(line[len("data: "):])
            assert event["type"] == kind
            events.append(event)
    return events


async def stream(proxy, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with proxy.client.stream("POST", "/v1/responses", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return await read_events(r)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


async def test_a_streamed_text_answer(start_real_proxy, mock_upstream):
    proxy = await responses_proxy(start_real_proxy)
    events = await stream(proxy, {"model": "gpt-5.5", "input": "Say hi"})
    assert types(events) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == (
        "Hello from the mock.")
    completed = events[-1]["response"]
    assert completed["status"] == "completed" and completed["id"].startswith("resp_")
    assert {e["response"]["id"] for e in events if "response" in e} == {completed["id"]}
    [message] = completed["output"]
    assert message["content"][0]["text"] == "Hello from the mock."
    assert completed["usage"] == {
        "input_tokens": 10, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 15}


async def test_a_response_that_does_not_stream_with_reasoning(start_real_proxy, mock_upstream):
    mock_upstream.scenario = "reasoning"
    proxy = await responses_proxy(start_real_proxy)
    response = await proxy.client.post("/v1/responses", json={
        "model": "gpt-5.5", "instructions": "Be brief.", "input": "Say hi",
        "reasoning": {"effort": "low", "summary": "detailed"}, "metadata": {"ticket": "42"}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "response" and body["status"] == "completed"
    reasoning, message = body["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Thinking it over."}]
    assert message["role"] == "assistant" and body["output_text"] == "Hello from the mock."
    assert body["metadata"] == {"ticket": "42"} and body["instructions"] == "Be brief."
    [upstream] = mock_upstream.requests
    assert upstream.body["reasoning"] == {"effort": "low", "summary": "detailed"}
    assert [item["role"] for item in upstream.body["input"]] == ["developer", "user"]


async def test_a_function_call_round_trip(start_real_proxy, mock_upstream):
    mock_upstream.tool_calls = [("get_weather", {"city": "Paris"})]
    proxy = await responses_proxy(start_real_proxy)
    first_input = [{"role": "user", "content": "Weather in Paris? mock-scenario:tool_call"}]
    events = await stream(proxy, {"model": "gpt-5.5", "input": first_input, "tools": [WEATHER]})
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [e["item"]["type"] for e in added] == ["function_call"]
    [call] = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert (call["name"], call["call_id"]) == ("get_weather", "call_1")
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert events[-1]["response"]["output"] == [call]
    # The client runs the tool and sends everything back, the result last.
    second_input = [*first_input, call, {"type": "function_call_output", "call_id": "call_1",
                                         "output": "Sunny, 21 °C. mock-scenario:text"}]
    response = await proxy.client.post("/v1/responses", json={
        "model": "gpt-5.5", "input": second_input, "tools": [WEATHER]})
    assert response.json()["output_text"] == "Hello from the mock."
    upstream = mock_upstream.requests[1].body
    kinds = [item["type"] for item in upstream["input"]]
    assert kinds == ["message", "function_call", "function_call_output"]
    assert upstream["input"][2]["output"] == "Sunny, 21 °C. mock-scenario:text"
    # One conversation, one cache key, a growing prefix.
    first = mock_upstream.requests[0].body
    assert upstream["prompt_cache_key"] == first["prompt_cache_key"]
    assert upstream["input"][:len(first["input"])] == first["input"]


async def test_structured_output_and_a_given_cache_key(start_real_proxy, mock_upstream):
    proxy = await responses_proxy(start_real_proxy)
    schema = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"], "additionalProperties": False}
    for _ in range(2):
        response = await proxy.client.post("/v1/responses", json={
            "model": "gpt-5.5", "input": f"Answer {_}", "prompt_cache_key": "my-task-7",
            "text": {"format": {"type": "json_schema", "name": "reply", "schema": schema}}})
        assert response.status_code == 200, response.text
    first, second = mock_upstream.requests
    assert first.body["text"]["format"]["schema"] == schema
    # The client's own key names the conversation: different inputs, one cache key.
    assert first.body["prompt_cache_key"] == second.body["prompt_cache_key"]


async def test_a_failure_is_response_failed(start_real_proxy, mock_upstream):
    mock_upstream.scenario = "failure"
    proxy = await responses_proxy(start_real_proxy)
    events = await stream(proxy, {"model": "gpt-5.5", "input": "Say hi"})
    assert types(events)[-1] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and "upstream exploded" in failed["error"]["message"]
    response = await proxy.client.post("/v1/responses", json={"input": "Say hi"})
    assert response.status_code == 502 and response.json()["error"]["code"] == "codex_error"


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": []}, "input"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file"}]}]},
     "input[0].content[0].type"),
    ({"input": "hi", "tools": [{"type": "function", "name": "a b"}]}, "tools[0].name"),
    ({"input": "hi", "text": {"format": {"type": "json_schema"}}}, "text.format.schema"),
    ({"input": "hi", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
])
async def test_bad_requests_get_400_naming_the_param(start_real_proxy, mock_upstream, body,
                                                     param):
    proxy = await responses_proxy(start_real_proxy)
    response = await proxy.client.post("/v1/responses", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert mock_upstream.requests == []


async def test_hosted_tools_are_left_out(start_real_proxy, mock_upstream):
    proxy = await responses_proxy(start_real_proxy)
    response = await proxy.client.post("/v1/responses", json={
        "input": "hi", "tools": [WEATHER, {"type": "web_search"},
                                 {"type": "custom", "name": "apply_patch"}]})
    assert response.status_code == 200, response.text
    assert mock_upstream.requests[0].tool_names() == ["get_weather"]


async def test_a_client_that_leaves_mid_stream_takes_the_codex_child_along(start_real_proxy,
                                                                           mock_upstream):
    mock_upstream.scenario = "hang"
    proxy = await responses_proxy(start_real_proxy)
    async with proxy.client.stream("POST", "/v1/responses",
                                   json={"input": "hi", "stream": True}) as response:
        # The iterator is kept: one left unfinished and dropped closes the connection.
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("data: "):
                break  # response.created: the run has started
        await mock_upstream.wait_for_request()
        [run] = proxy.manager.active
        pids = [run.pid, *children_of(run.pid)]
        assert all(process_state(pid) for pid in pids)
    for pid in pids:
        await wait_dead(pid)
    await proxy.manager.wait_idle()


# -- clients -----------------------------------------------------------------------------------


async def test_the_openai_python_sdk(start_real_proxy, mock_upstream):
    mock_upstream.scenario = "reasoning"
    proxy = await responses_proxy(start_real_proxy)
    client = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=API_KEY, max_retries=0)
    response = await client.responses.create(model="gpt-5.5", input="Say hi")
    assert response.output_text == "Hello from the mock."
    assert response.usage is not None and response.usage.total_tokens == 15
    deltas = []
    async for event in await client.responses.create(model="gpt-5.5", input="Say hi",
                                                     stream=True):
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
    assert "".join(deltas) == "Hello from the mock."
    async with client.responses.stream(model="gpt-5.5", input="Say hi") as events:
        async for _ in events:
            pass
        final = await events.get_final_response()
    assert final.output_text == "Hello from the mock."
    assert final.output[0].type == "reasoning"
    mock_upstream.scenario = "tool_call"
    mock_upstream.tool_calls = [("get_weather", {"city": "Paris"})]
    async with client.responses.stream(model="gpt-5.5", input="Weather?",
                                       tools=[WEATHER]) as events:
        final = await events.get_final_response()
    [call] = final.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}


async def test_the_openai_npm_client(start_real_proxy, mock_upstream):
    proxy = await responses_proxy(start_real_proxy)
    node_path = os.environ.get("CODEX_OPENAI_PROXY_TEST_NODE_PATH") or str(
        REPO / ".tools" / "node" / "node_modules")
    with trio.fail_after(60):
        result = await trio.run_process(
            ["node", str(REPO / "tests" / "node" / "responses_client.cjs"), proxy.url + "/v1",
             API_KEY], env={**os.environ, "NODE_PATH": node_path}, capture_stdout=True,
            capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    outcome = json.loads(result.stdout)
    assert outcome["created"]["output_text"] == "Hello from the mock."
    assert outcome["streamed"]["text"] == "Hello from the mock."
    assert outcome["streamed"]["status"] == "completed"
    assert outcome["helper"]["output_text"] == "Hello from the mock."


CLIENT_CATALOG = REPO / "config" / "codex-client-models.json"


async def test_the_codex_cli_as_a_client(start_real_proxy, mock_upstream, real_codex_bin,
                                         tmp_path):
    # The client Codex runs its own shell tool: its call comes back through the proxy as a
    # function_call, the client runs the command, and sends the output back.
    # Codex keeps the name `exec_command` for its own tool: the model is offered the client's
    # as `exec_command_`, and its call goes back to the client under the client's name.
    mock_upstream.tool_calls = [("exec_command_", {"cmd": "echo mock-scenario:text"})]
    proxy = await responses_proxy(start_real_proxy)
    home = tmp_path / "client-codex"
    home.mkdir()
    config = (REPO / "config" / "codex-client.toml").read_text().replace(
        "http://127.0.0.1:11435/v1", proxy.url + "/v1").replace(
        "/path/to/codex-client-models.json", str(CLIENT_CATALOG))
    (home / "config.toml").write_text(config)
    work = tmp_path / "work"
    work.mkdir()
    with trio.fail_after(120):
        result = await trio.run_process(
            [real_codex_bin, "exec", "--json", "--skip-git-repo-check",
             "Run a command. mock-scenario:tool_call"],
            cwd=work, env={**os.environ, "CODEX_HOME": str(home), "CODEX_PROXY_KEY": API_KEY,
                           "HOME": str(tmp_path)},
            stdin=subprocess.DEVNULL, capture_stdout=True, capture_stderr=True, check=False)
    said = result.stdout.decode()
    assert result.returncode == 0, said + result.stderr.decode()
    events = [json.loads(line) for line in said.splitlines() if line.startswith("{")]
    commands = [e["item"] for e in events if e.get("type") == "item.completed"
                and e["item"]["type"] == "command_execution"]
    assert [c["command"] for c in commands] and "echo mock-scenario:text" in commands[0][
        "command"]
    messages = [e["item"]["text"] for e in events if e.get("type") == "item.completed"
                and e["item"]["type"] == "agent_message"]
    assert messages == ["Hello from the mock."]
    # What the client Codex offered reached the model as the client's tools, and the
    # command's output came back as a function_call_output.
    first, second = mock_upstream.requests
    assert sorted(first.tool_names()) == ["exec_command_", "write_stdin"]
    assert [item["name"] for item in second.body["input"]
            if item["type"] == "function_call"] == ["exec_command_"]
    outputs = [item for item in second.body["input"] if item["type"] == "function_call_output"]
    assert len(outputs) == 1 and "mock-scenario:text" in json.dumps(outputs[0])
