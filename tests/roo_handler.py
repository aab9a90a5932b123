"""What Roo Code's (and Zoo Code's) "OpenAI Compatible" provider sends, from an imported profile.

A faithful port of the request-building logic of Roo Code v3.52.1 (RooCodeInc/Roo-Code; Zoo
Code, Zoo-Code-Org/Zoo-Code, carries the same code, with the differences noted), for the parts a
settings profile decides. Checked against Roo's own TypeScript handler (compiled, HTTP call
stubbed) across 17 profile variants: identical bodies, key order included. Ported:

  src/core/config/importExport.ts   importSettingsFromPath: which profile becomes current, and
                                    the zod parse that skips a profile missing required fields
  src/shared/api.ts                 shouldUseReasoningEffort
  src/api/transform/model-params.ts getModelParams (format "openai"), reasoning.ts
  src/api/providers/openai.ts       OpenAiHandler.createMessage, streaming branch, and
                                    addMaxTokensIfNeeded
  src/core/context-management/index.ts  when Roo condenses the history (not sent)

Messages are given as they leave Roo's `convertToOpenAiMessages` (its history conversion is
not a profile's business); the o1/o3/o4, R1 and Azure branches are not ported (the profile
uses none of them).
"""

from __future__ import annotations

import copy
from typing import Any

#: packages/types/src/providers/openai.ts openAiModelInfoSaneDefaults
SANE_DEFAULTS = {"maxTokens": -1, "contextWindow": 128_000, "supportsImages": True,
                 "supportsPromptCache": False, "inputPrice": 0, "outputPrice": 0}
#: packages/types/src/model.ts reasoningEffortsExtended (Zoo adds "max")
EFFORTS = {"roo": ["none", "minimal", "low", "medium", "high", "xhigh"],
           "zoo": ["none", "minimal", "low", "medium", "high", "xhigh", "max"]}
TOKEN_BUFFER_PERCENTAGE = 0.1  # src/core/context-management/index.ts
ANTHROPIC_DEFAULT_MAX_TOKENS = 8192
MODES = ("architect", "code", "ask", "debug", "orchestrator")


class SkippedOnImport(Exception):
    """Roo's importer would skip the profile (its zod parse fails)."""


def imported_profile(data: dict[str, Any], flavor: str = "roo") -> dict[str, Any]:
    """The profile Roo makes current when this settings file is imported."""
    profiles = data["providerProfiles"]
    configs = profiles["apiConfigs"]
    name = profiles["currentApiConfigName"]
    config = configs[name] if name in configs else next(iter(configs.values()))
    info = config.get("openAiCustomModelInfo")
    if info is not None:
        if not isinstance(info.get("contextWindow"), int | float):
            raise SkippedOnImport("openAiCustomModelInfo.contextWindow is required")
        if not isinstance(info.get("supportsPromptCache"), bool):
            raise SkippedOnImport("openAiCustomModelInfo.supportsPromptCache is required")
        effort = info.get("reasoningEffort")
        if effort is not None and effort not in EFFORTS[flavor]:
            raise SkippedOnImport(f"openAiCustomModelInfo.reasoningEffort {effort!r}")
    return config


def should_use_reasoning_effort(model: dict[str, Any], settings: dict[str, Any]) -> bool:
    if settings.get("enableReasoningEffort") is False:
        return False
    selected = settings.get("reasoningEffort")
    if selected is None:
        selected = model.get("reasoningEffort")
    if selected == "disable":
        return False
    capability = model.get("supportsReasoningEffort")
    if isinstance(capability, list):
        return bool(selected) and selected in capability
    if capability is True:
        return bool(selected)
    return bool(model.get("reasoningEffort"))


def reasoning_effort(model: dict[str, Any], settings: dict[str, Any]) -> str | None:
    """getModelParams + getOpenAiReasoning: the `reasoning_effort` sent, if any."""
    if not should_use_reasoning_effort(model, settings):
        return None
    effort = settings.get("reasoningEffort")
    effort = effort if effort is not None else model.get("reasoningEffort")
    return effort if effort and effort != "disable" else None


def strict_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """convertToolsForOpenAI, for Roo's native tools (MCP tools, `mcp--*`, stay non-strict)."""
    converted = []
    for tool in copy.deepcopy(tools):
        function = tool["function"]
        function["strict"] = not function["name"].replace("-", "_").startswith("mcp__")
        converted.append(tool)
    return converted


def request_body(profile: dict[str, Any], system_prompt: str, messages: list[dict[str, Any]],
                 tools: list[dict[str, Any]], flavor: str = "roo") -> dict[str, Any]:
    """OpenAiHandler.createMessage's body, streaming branch (the profile streams)."""
    assert profile.get("openAiStreamingEnabled", True), "only the streaming branch is ported"
    model_id = profile.get("openAiModelId") or ""
    info = profile.get("openAiCustomModelInfo") or SANE_DEFAULTS
    system: dict[str, Any] = {"role": "system", "content": system_prompt}
    converted = copy.deepcopy(messages)
    if info.get("supportsPromptCache"):
        system = {"role": "system", "content": [
            {"type": "text", "text": system_prompt, "cache_control": {"type": "ephemeral"}}]}
        for message in [m for m in converted if m["role"] == "user"][-2:]:
            if isinstance(message["content"], str):
                message["content"] = [{"type": "text", "text": message["content"]}]
            texts = [part for part in message["content"] if part["type"] == "text"]
            texts[-1]["cache_control"] = {"type": "ephemeral"}
    body: dict[str, Any] = {"model": model_id}
    temperature = profile.get("modelTemperature")
    if flavor == "roo":
        body["temperature"] = temperature if temperature is not None else 0
    elif temperature is not None:  # Zoo (PR #247): no temperature unless one is set
        body["temperature"] = temperature
    body["messages"] = [system, *converted]
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    effort = reasoning_effort(info, profile)
    if effort is not None:
        body["reasoning_effort"] = effort
    # Task.attemptApiRequest always passes the mode's tools this way.
    body["tools"] = strict_tools(tools)
    body["tool_choice"] = "auto"
    body["parallel_tool_calls"] = True
    if profile.get("includeMaxTokens") is True:
        body["max_completion_tokens"] = profile.get("modelMaxTokens") or info.get("maxTokens")
    return body


def condense_threshold(profile: dict[str, Any]) -> int:
    """The history size (tokens) above which Roo condenses it (manageContext)."""
    model_id = profile.get("openAiModelId") or ""
    info = profile.get("openAiCustomModelInfo") or SANE_DEFAULTS
    max_tokens = info.get("maxTokens")
    if max_tokens and max_tokens > 0:
        if "gpt-5" not in model_id.lower():  # getModelMaxOutputTokens' 20% cap
            max_tokens = min(max_tokens, -(-info["contextWindow"] * 2 // 10))
    else:
        max_tokens = ANTHROPIC_DEFAULT_MAX_TOKENS
    return int(info["contextWindow"] * (1 - TOKEN_BUFFER_PERCENTAGE) - max_tokens)
