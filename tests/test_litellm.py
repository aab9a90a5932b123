"""LiteLLM as the client (what Aider and many Python agents call the proxy through), with the
real Codex 0.169.0 against the mock upstream.

LiteLLM reaches an OpenAI-compatible server as `model="openai/<model>"` with `api_base` and
`api_key`, on /v1/chat/completions; some calls (tools with a reasoning effort, for model ids
it takes for OpenAI's reasoning models, or any `openai/responses/<model>` id) it bridges to
/v1/responses instead. Its calls are blocking (or asyncio), so they run in a worker thread
while trio serves the proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from collections.abc import Callable
from typing import Any

import openai
import pytest
import trio

from codex_openai_proxy.catalog import PINNED_DEFAULT_MODEL

from conftest import API_KEY

pytestmark = [pytest.mark.real_codex,
              # LiteLLM's own pydantic models warn about their TypedDicts as they are built.
              pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning"),
              pytest.mark.filterwarnings("ignore:Accessing the 'model_:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")]

#: The proxy's default model with the pinned Codex, the one the README's snippets name.
MODEL = PINNED_DEFAULT_MODEL
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
QUESTION = [{"role": "user", "content": "What's the weather in Paris?"}]


@pytest.fixture(scope="session")
def litellm() -> Any:
    """LiteLLM, imported only by the tests that use it (the import alone takes seconds)."""
    # Otherwise LiteLLM fetches its model cost map from GitHub at import, retrying for ~10 s
    # where there is no internet.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            import litellm
    except ImportError:
        pytest.fail("litellm is not installed: run bash scripts/test.sh")
    litellm.suppress_debug_info = True  # no "Give Feedback" banner with every exception
    return litellm


@pytest.fixture
async def real_proxy(start_real_proxy: Any) -> Any:
    return await start_real_proxy(engine="app-server")


@pytest.fixture
def call(real_proxy: Any) -> Callable[..., Any]:
    """`await call(fn, model=..., ...)`: `fn` (litellm.completion, or an asyncio function such
    as litellm.acompletion) called the way users call it against the proxy, in a thread."""

    async def run(fn: Callable[..., Any], **kwargs: Any) -> Any:
        kwargs = {"api_base": real_proxy.url + "/v1", "api_key": API_KEY, **kwargs}
        if asyncio.iscoroutinefunction(fn):
            return await trio.to_thread.run_sync(lambda: asyncio.run(fn(**kwargs)))
        return await trio.to_thread.run_sync(lambda: fn(**kwargs))

    return run


def collect(stream: Any) -> list[Any]:
    return list(stream)


def text_of(chunks: list[Any]) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


async def test_completion_text_reasoning_and_usage(litellm, call, mock_upstream):
    mock_upstream.scenario = "reasoning"
    response = await call(litellm.completion, model=f"openai/{MODEL}", messages=QUESTION)
    message = response.choices[0].message
    assert message.content == "Hello from the mock."
    assert message.reasoning_content == "Thinking it over."
    assert response.choices[0].finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (10, 5)
    assert response.usage.prompt_tokens_details.cached_tokens == 2
    assert response.usage.completion_tokens_details.reasoning_tokens == 1
    # LiteLLM strips its `openai/` provider prefix: the model gets the catalog's id.
    assert mock_upstream.requests[0].body["model"] == MODEL


async def test_a_stream_with_usage(litellm, call, mock_upstream):
    mock_upstream.scenario = "reasoning"
    chunks = await call(lambda **kw: collect(litellm.completion(**kw)), model=f"openai/{MODEL}",
                        messages=QUESTION, stream=True, stream_options={"include_usage": True})
    assert text_of(chunks) == "Hello from the mock."
    assert "".join(getattr(chunk.choices[0].delta, "reasoning_content", None) or ""
                   for chunk in chunks if chunk.choices) == "Thinking it over."
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 5, 15)
    built = litellm.stream_chunk_builder(chunks, messages=QUESTION)
    assert built.choices[0].message.content == "Hello from the mock."
    assert built.choices[0].finish_reason == "stop"
    assert built.usage.prompt_tokens == 10  # the proxy's count, not LiteLLM's own estimate


async def test_acompletion_plain_and_streamed(litellm, call, mock_upstream):
    async def both(**kwargs: Any) -> tuple[Any, list[Any]]:
        plain = await litellm.acompletion(**kwargs)
        stream = await litellm.acompletion(**kwargs, stream=True,
                                           stream_options={"include_usage": True})
        return plain, [chunk async for chunk in stream]

    plain, chunks = await call(both, model=f"openai/{MODEL}", messages=QUESTION)
    assert plain.choices[0].message.content == "Hello from the mock."
    assert text_of(chunks) == "Hello from the mock."
    assert chunks[-1].usage.total_tokens == 15
    assert len(mock_upstream.requests) == 2


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_tool_call_round_trip(litellm, call, mock_upstream, stream):
    async def ask(messages: list[dict[str, Any]]) -> Any:
        def completion(**kwargs: Any) -> Any:
            response = litellm.completion(**kwargs)
            return litellm.stream_chunk_builder(list(response), messages=messages) if stream \
                else response
        return await call(completion, model=f"openai/{MODEL}", messages=messages,
                          tools=[WEATHER], stream=stream)

    mock_upstream.scenario = "tool_call"
    mock_upstream.tool_calls = [("get_weather", {"city": "Paris"})]
    messages = list(QUESTION)
    first = await ask(messages)
    assert first.choices[0].finish_reason == "tool_calls"
    [tool_call] = first.choices[0].message.tool_calls
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}
    # What LiteLLM's users do: send the assistant message back as LiteLLM gave it, then the
    # tool's result.
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": "Sunny, 21 °C"})
    mock_upstream.scenario = "text"
    second = await ask(messages)
    assert second.choices[0].message.content == "Hello from the mock."
    assert second.choices[0].finish_reason == "stop"
    # The model sees its own call and the result, and nothing else: the `content: ""` that a
    # message rebuilt from a stream carries is no empty message of its own.
    items = [item for item in mock_upstream.requests[1].body["input"]
             if item["type"] != "additional_tools"]
    assert items[1:] == [
        {"type": "function_call", "call_id": tool_call.id, "name": "get_weather",
         "arguments": tool_call.function.arguments},
        {"type": "function_call_output", "call_id": tool_call.id, "output": "Sunny, 21 °C"},
    ]


async def test_reasoning_effort_reaches_the_model(litellm, call, mock_upstream):
    await call(litellm.completion, model=f"openai/{MODEL}", messages=QUESTION,
               reasoning_effort="high")
    assert mock_upstream.requests[0].body["reasoning"]["effort"] == "high"


# `openai/<model>` with tools and an effort is bridged to /v1/responses by LiteLLM 1.110 for
# ids such as the default model's, and `openai/responses/<model>` always is: both must work as
# a tool loop.
@pytest.mark.parametrize("model", [f"openai/{MODEL}", f"openai/responses/{MODEL}"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_tools_with_a_reasoning_effort(litellm, call, mock_upstream, logs, model, stream):
    async def ask(messages: list[dict[str, Any]]) -> Any:
        def completion(**kwargs: Any) -> Any:
            response = litellm.completion(**kwargs)
            return litellm.stream_chunk_builder(list(response), messages=messages) if stream \
                else response
        return await call(completion, model=model, messages=messages, tools=[WEATHER],
                          reasoning_effort="high", stream=stream)

    mock_upstream.scenario = "tool_call"
    mock_upstream.tool_calls = [("get_weather", {"city": "Paris"})]
    messages = list(QUESTION)
    first = await ask(messages)
    [tool_call] = first.choices[0].message.tool_calls
    assert tool_call.function.name == "get_weather"
    assert first.choices[0].finish_reason == "tool_calls"
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": "Sunny, 21 °C"})
    mock_upstream.scenario = "text"
    second = await ask(messages)
    assert second.choices[0].message.content == "Hello from the mock."
    assert [request.body["reasoning"]["effort"] for request in mock_upstream.requests] == [
        "high", "high"]
    assert {"type": "function_call_output", "call_id": tool_call.id,
            "output": "Sunny, 21 °C"} in mock_upstream.requests[1].body["input"]
    if "/responses/" in model:
        assert "POST /v1/responses 200" in logs.text()


async def test_the_call_aider_makes(litellm, call, mock_upstream):
    # aider 0.86 (aider/models.py): drop_params, a stream, temperature 0 for models it does
    # not know to refuse it, the effort in extra_body.
    chunks = await call(lambda **kw: collect(litellm.completion(**kw)),
                        model=f"openai/{MODEL}", stream=True, temperature=0, drop_params=True,
                        extra_body={"reasoning_effort": "medium"},
                        messages=[{"role": "system", "content": "Act as an expert developer."},
                                  *QUESTION])
    assert text_of(chunks) == "Hello from the mock."
    [upstream] = mock_upstream.requests
    assert upstream.body["reasoning"]["effort"] == "medium"


@pytest.mark.parametrize("model", [f"openai/{MODEL}", f"openai/responses/{MODEL}"])
async def test_a_bad_request_is_a_bad_request_error(litellm, call, mock_upstream, model):
    bad_tool = {"type": "function", "function": {"name": "get weather", "parameters": {
        "type": "object", "properties": {}}}}
    with pytest.raises(litellm.BadRequestError) as caught:
        await call(litellm.completion, model=model, messages=QUESTION, tools=[bad_tool])
    assert caught.value.status_code == 400
    # The proxy's message, naming the field, reaches the user.
    assert "must be 1-64 letters, digits, '_' or '-'; got 'get weather'" in str(caught.value)
    assert mock_upstream.requests == []


async def test_a_bad_key_is_an_authentication_error(litellm, call):
    with pytest.raises(litellm.AuthenticationError) as caught:
        await call(litellm.completion, model=f"openai/{MODEL}", messages=QUESTION,
                   api_key="wrong")
    assert caught.value.status_code == 401


async def test_a_codex_failure_raises_once_and_is_not_retried(litellm, call, mock_upstream):
    mock_upstream.scenario = "failure"
    with pytest.raises(litellm.BadGatewayError) as caught:
        await call(litellm.completion, model=f"openai/{MODEL}", messages=QUESTION)
    assert "upstream exploded" in str(caught.value)
    # A failure mid-stream is an exception too, not an answer that just stops.
    with pytest.raises(openai.APIError) as caught:  # LiteLLM's exceptions are openai's
        await call(lambda **kw: collect(litellm.completion(**kw)), model=f"openai/{MODEL}",
                   messages=QUESTION, stream=True)
    assert "upstream exploded" in str(caught.value)
    # Each request one Codex run: LiteLLM's client does not retry what the proxy marks final.
    assert len(mock_upstream.requests) == 2
