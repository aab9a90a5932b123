"""The limits the proxy enforces for Codex, checked against the real, pinned Codex CLI: the
depth of JSON it reads and the length of prompt it takes. If a Codex upgrade moves either, these
tests say so before users find out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from codex_openai_proxy.chat_request import MAX_JSON_DEPTH
from codex_openai_proxy.prompt import MAX_PROMPT_CHARS

from conftest import chat_body
from mock_responses import codex_home

pytestmark = pytest.mark.real_codex


def nested_schema(levels: int) -> dict[str, Any]:
    """A JSON Schema whose JSON nests `levels` deep: objects in objects, a string at the end."""
    assert levels >= 2
    schema: dict[str, Any] = {"type": "string", "enum": ["x"]} if levels % 2 == 0 \
        else {"type": "string"}
    for _ in range((levels - 1) // 2):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def json_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(json_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(json_depth, value), default=0)
    return 0


@pytest.mark.parametrize("levels", [2, 3, 64, 123])
def test_nested_schema_nests_as_asked(levels: int) -> None:
    assert json_depth(nested_schema(levels)) == levels


async def thread_start_answer(codex_bin: str, home: Path, schema: dict[str, Any]) -> str:
    """Run `codex app-server`, start a thread with one dynamic tool whose input schema is
    `schema`: "answered", or Codex's complaint when it could not read the request at all."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home.parent),
           "CODEX_HOME": str(home)}
    process = await trio.lowlevel.open_process(
        [codex_bin, "app-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, cwd=str(home.parent), start_new_session=True)
    assert process.stdin and process.stdout and process.stderr
    requests = [
        {"id": 1, "method": "initialize", "params": {
            "clientInfo": {"name": "test", "title": "test", "version": "0"},
            "capabilities": {"experimentalApi": True}}},
        {"method": "initialized"},
        {"id": 2, "method": "thread/start", "params": {
            "cwd": str(home.parent), "sandbox": "read-only", "approvalPolicy": "never",
            "ephemeral": True, "dynamicTools": [{"type": "function", "name": "deep",
                                                 "description": "", "inputSchema": schema}]}},
    ]
    outcome = ""
    try:
        await process.stdin.send_all(b"".join(json.dumps(r).encode() + b"\n" for r in requests))

        async def answered() -> None:
            nonlocal outcome
            buffered = b""
            while chunk := await process.stdout.receive_some():
                buffered += chunk
                for line in buffered.split(b"\n")[:-1]:
                    if json.loads(line).get("id") == 2:
                        outcome = "answered"
                        return
                buffered = buffered.rsplit(b"\n", 1)[-1]

        async def refused() -> None:
            nonlocal outcome
            buffered = b""
            while chunk := await process.stderr.receive_some():
                buffered += chunk
                if b"recursion limit exceeded" in buffered:
                    outcome = "recursion limit exceeded"
                    return

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for wait in (answered, refused):
                    async def first(wait=wait) -> None:
                        await wait()
                        nursery.cancel_scope.cancel()
                    nursery.start_soon(first)
    finally:
        with trio.CancelScope(shield=True):
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                await stream.aclose()
    return outcome


async def test_codex_reads_a_tool_schema_123_levels_deep_and_no_deeper(real_codex_bin,
                                                                      tmp_path):
    # The measurement behind MAX_JSON_DEPTH: thread/start holds the schema 4 levels deep, and
    # codex-cli 0.169.0 reads a JSON-RPC message only up to 127 levels. One level more and it
    # logs "recursion limit exceeded" and never answers.
    home = codex_home(tmp_path / "codex-home", "http://127.0.0.1:9/v1")
    assert await thread_start_answer(real_codex_bin, home, nested_schema(123)) == "answered"
    assert await thread_start_answer(real_codex_bin, home, nested_schema(124)) == \
        "recursion limit exceeded"
    assert MAX_JSON_DEPTH < 123  # the budget is inside it, with room to spare


async def test_a_tool_at_the_depth_budget_reaches_the_model(start_real_proxy, mock_upstream):
    proxy = await start_real_proxy(engine="app-server")
    tool = {"type": "function",
            "function": {"name": "deep", "parameters": nested_schema(MAX_JSON_DEPTH)}}
    response = await proxy.client.post("/v1/chat/completions", json=chat_body(tools=[tool]))
    assert response.status_code == 200, response.text
    [upstream] = mock_upstream.requests
    assert "deep" in upstream.tool_names()

    tool["function"]["parameters"] = nested_schema(MAX_JSON_DEPTH + 1)
    response = await proxy.client.post("/v1/chat/completions", json=chat_body(tools=[tool]))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tools[0].function.parameters"
    assert len(mock_upstream.requests) == 1


@pytest.fixture(params=["exec", "app-server"])
def engine(request):
    return request.param


async def test_a_prompt_at_codex_s_limit_runs_and_one_over_is_refused(start_real_proxy,
                                                                     mock_upstream, engine):
    # Codex counts characters (Unicode scalar values), not bytes: 1,048,576 two-byte
    # characters run; one more is refused by the proxy (exec), before Codex would refuse it.
    proxy = await start_real_proxy(engine=engine)
    at_limit = chat_body("é" * MAX_PROMPT_CHARS)
    response = await proxy.client.post("/v1/chat/completions", json=at_limit)
    assert response.status_code == 200, response.text
    assert len(mock_upstream.requests) == 1

    over = chat_body("é" * (MAX_PROMPT_CHARS + 1))
    response = await proxy.client.post("/v1/chat/completions", json=over)
    if engine == "exec":
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "context_length_exceeded"
        assert len(mock_upstream.requests) == 1
    else:
        # app-server gives the conversation as history, which Codex does not limit: it goes
        # up, and the model's context window is the judge.
        assert response.status_code == 200, response.text
        assert len(mock_upstream.requests) == 2
