"""config/roo-openai-compatible.json, imported into Roo Code (or Zoo Code), makes its OpenAI
Compatible provider send what the proxy needs: the default model, streaming with usage, and
`reasoning_effort: "medium"`; and Roo condenses history at the right time. The request is
rendered by tests/roo_handler.py, a port of Roo's own handler, then sent to a real proxy."""

from __future__ import annotations

import json

import pytest
from roo_handler import condense_threshold, imported_profile, request_body
from test_tool_calls import ROO_SYSTEM_PROMPT, ROO_TOOLS

from codex_openai_proxy.catalog import PINNED_DEFAULT_MODEL
from codex_openai_proxy.settings import Settings

from conftest import REPO, open_stream

PROFILE = json.loads((REPO / "config" / "roo-openai-compatible.json").read_text())
MESSAGES = [{"role": "user", "content": [
    {"type": "text", "text": "<task>\nSay hello.\n</task>"},
    {"type": "text", "text": "<environment_details>\n# Current Mode\ncode\n"
                             "</environment_details>"}]}]


@pytest.mark.parametrize("flavor", ["roo", "zoo"])
def test_the_imported_profile_sends_medium_effort_to_the_default_model(flavor):
    profile = imported_profile(PROFILE, flavor)
    body = request_body(profile, ROO_SYSTEM_PROMPT, MESSAGES, ROO_TOOLS, flavor)
    settings = Settings()
    assert profile["openAiBaseUrl"] == f"http://{settings.host}:{settings.port}/v1"
    assert profile["openAiApiKey"] == settings.api_key
    # The model a fresh install answers with (Codex 0.169.0's own default).
    assert body["model"] == PINNED_DEFAULT_MODEL
    assert body["reasoning_effort"] == "medium"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "max_tokens" not in body and "max_completion_tokens" not in body
    assert ("temperature" in body) is (flavor == "roo")  # Zoo sends none unless one is set


def test_every_mode_uses_the_imported_profile():
    profiles = PROFILE["providerProfiles"]
    profile_id = profiles["apiConfigs"][profiles["currentApiConfigName"]]["id"]
    # Otherwise switching to a mode brings back the profile it used before the import.
    assert profiles["modeApiConfigs"] == dict.fromkeys(
        ("architect", "code", "ask", "debug", "orchestrator"), profile_id)


def test_roo_condenses_well_inside_the_models_window():
    profile = imported_profile(PROFILE)
    assert profile["openAiCustomModelInfo"]["contextWindow"] == 272_000  # gpt-6.1-sol's
    # 90% of the window less the output reserve: ~78%, not the ~43% a 128k reserve gave.
    assert condense_threshold(profile) == 272_000 * 9 // 10 - 32_768


def test_an_effort_outside_the_model_info_is_not_sent():
    # What the profile shipped before: `reasoningEffort` beside the model info, not in it.
    profile = json.loads(json.dumps(imported_profile(PROFILE)))
    del profile["openAiCustomModelInfo"]["reasoningEffort"]
    profile["reasoningEffort"] = "medium"
    body = request_body(profile, ROO_SYSTEM_PROMPT, MESSAGES, ROO_TOOLS)
    assert "reasoning_effort" not in body


async def test_what_the_profile_sends_runs_on_the_proxy(start_proxy, fake_codex):
    proxy = await start_proxy(engine="app-server")
    body = request_body(imported_profile(PROFILE), ROO_SYSTEM_PROMPT, MESSAGES, ROO_TOOLS)
    async with open_stream(proxy.client, body) as s:
        events = await s.read_to_end()
    assert events[-1] == "[DONE]" and events[-2]["usage"]["prompt_tokens"] == 120
    [run] = fake_codex.runs()
    [turn_start] = [r for r in run["requests"] if r.get("method") == "turn/start"]
    assert turn_start["params"]["effort"] == "medium"
    [resume] = [r for r in run["requests"] if r.get("method") == "thread/resume"]
    assert resume["params"]["model"] == PINNED_DEFAULT_MODEL
    assert run["instructions"] == ROO_SYSTEM_PROMPT
    assert sorted(tool["name"] for tool in run["dynamic_tools"]) == sorted(
        tool["function"]["name"] for tool in ROO_TOOLS)
