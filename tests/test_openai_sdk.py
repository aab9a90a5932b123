"""The official `openai` Python SDK as the client, as users will run it."""

from __future__ import annotations

import openai
import pytest

from conftest import API_KEY


def sdk(proxy, api_key: str = API_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=api_key)


async def test_models_list(proxy):
    models = await sdk(proxy).models.list()
    ids = [model.id for model in models.data]
    assert ids[0] == "gpt-6.1-sol" and "gpt-5.5" in ids
    assert (await sdk(proxy).models.retrieve("gpt-5.5")).id == "gpt-5.5"


async def test_create(proxy):
    completion = await sdk(proxy).chat.completions.create(
        model="gpt-5", messages=[{"role": "user", "content": "Say hello."}],
        temperature=0.3, reasoning_effort="medium",
    )
    assert completion.choices[0].message.content == "Hello from fake Codex."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 120
    assert completion.usage.completion_tokens_details.reasoning_tokens == 10


async def test_create_with_stream_and_include_usage(proxy):
    stream = await sdk(proxy).chat.completions.create(
        model="gpt-5", messages=[{"role": "user", "content": "Say hello."}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from fake Codex."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 150


async def test_a_bad_key_is_an_authentication_error(proxy):
    with pytest.raises(openai.AuthenticationError) as caught:
        await sdk(proxy, api_key="wrong").models.list()
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


async def test_a_bad_request_is_a_bad_request_error(proxy):
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(proxy).chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "hi"}],
            reasoning_effort="extreme",  # type: ignore[arg-type]
        )
    assert caught.value.param == "reasoning_effort"


async def test_a_codex_failure_is_not_retried(start_proxy, fake_codex):
    # The SDK retries 5xx twice, each retry a new Codex run, unless told not to.
    proxy = await start_proxy("turn_failed")
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(proxy).chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502
    assert len(fake_codex.runs()) == 1
