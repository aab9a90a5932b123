"""The README's "Clients" snippets: the config files under config/clients/ are the README's
snippets, parse, and point at the proxy's defaults; the openai SDK (Python and Node) and curl
snippets run as they are written, against a real proxy (real Codex, mock upstream)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml

from codex_openai_proxy.catalog import PINNED_DEFAULT_MODEL
from codex_openai_proxy.settings import Settings

from conftest import API_KEY, REPO, TESTS

CLIENTS = REPO / "config" / "clients"
README = (REPO / "README.md").read_text()
DEFAULTS = Settings()
DEFAULT_BASE_URL = f"http://{DEFAULTS.host}:{DEFAULTS.port}/v1"
CATALOG = {model["slug"]: model for model in json.loads(
    (TESTS / "fixtures" / "codex-0.169.0-models.json").read_text())["models"]}


def readme_blocks(section: str, language: str) -> list[str]:
    """The ```language code blocks of the README's `### section`."""
    start = README.index(f"\n### {section}\n")
    ends = [end for end in (README.find("\n## ", start + 1), README.find("\n### ", start + 1))
            if end != -1]
    return re.findall(rf"```{language}\n(.*?)```", README[start:min(ends)], re.S)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.suffix == ".yml" or path.suffix == ".yaml" \
        else json.loads(path.read_text())


def named(path: Path) -> dict[str, Any]:
    """What a client's config names: base URL, key, model id, context window (where it says)."""
    config = load(path)
    if path.name == "continue-config.yaml":
        [model] = config["models"]
        return {"base_url": model["apiBase"], "api_key": model["apiKey"],
                "model": model["model"],
                "context_window": model["defaultCompletionOptions"]["contextLength"]}
    if path.name == "zed-settings.json":
        [(provider_id, provider)] = config["language_models"]["openai_compatible"].items()
        [model] = provider["available_models"]
        assert config["agent"]["default_model"] == {"provider": provider_id,
                                                    "model": model["name"]}
        return {"base_url": provider["api_url"], "model": model["name"],
                "context_window": model["max_tokens"]}
    if path.name == "opencode.json":
        [(provider_id, provider)] = config["provider"].items()
        [(model_id, model)] = provider["models"].items()
        assert config["model"] == config["small_model"] == f"{provider_id}/{model_id}"
        return {"base_url": provider["options"]["baseURL"],
                "api_key": provider["options"]["apiKey"], "model": model_id,
                "context_window": model["limit"]["context"]}
    if path.name == "aider.model.metadata.json":
        [(model_id, model)] = config.items()
        return {"model": model_id.removeprefix("openai/"),
                "context_window": model["max_input_tokens"]}
    if path.name == "aider.model.settings.yml":
        [model] = config
        assert "reasoning_effort" in model["accepts_settings"]
        return {"model": model["name"].removeprefix("openai/")}
    raise AssertionError(f"{path.name}: a client config the tests do not know")


@pytest.mark.parametrize("path", sorted(CLIENTS.iterdir()), ids=lambda path: path.name)
def test_a_client_config_is_the_readmes_snippet_and_names_the_proxys_defaults(path):
    assert path.read_text().strip() in README
    config = named(path)
    assert config["model"] == PINNED_DEFAULT_MODEL
    assert config.get("base_url", DEFAULT_BASE_URL) == DEFAULT_BASE_URL
    assert config.get("api_key", DEFAULTS.api_key) == DEFAULTS.api_key
    if "context_window" in config:
        assert config["context_window"] == CATALOG[PINNED_DEFAULT_MODEL]["context_window"]


def with_test_proxy(snippet: str, proxy: Any) -> str:
    """The snippet pointed at the test's proxy instead of the default one."""
    assert DEFAULT_BASE_URL in snippet and DEFAULTS.api_key in snippet
    assert f'"{PINNED_DEFAULT_MODEL}"' in snippet
    return snippet.replace(DEFAULT_BASE_URL, proxy.url + "/v1").replace(DEFAULTS.api_key,
                                                                       API_KEY)


async def run(argv: list[str], **kwargs: Any) -> str:
    with trio.fail_after(60):
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                        check=False, **kwargs)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


@pytest.fixture
async def agent_proxy(start_real_proxy, mock_upstream):
    # The mock's model calls get_weather when asked, and answers once it has the result.
    mock_upstream.scenario = "agent"
    mock_upstream.tool_calls = [("get_weather", {"city": "Paris"})]
    return await start_real_proxy(engine="app-server")


def check_the_agent_loop(upstream: list[Any]) -> None:
    streamed, asked, answered = upstream
    assert streamed.body["reasoning"]["effort"] == "medium"
    assert asked.tool_names() == ["get_weather"]
    assert {"type": "function_call_output", "call_id": "call_2_1",
            "output": "Sunny in Paris"} in answered.body["input"]


EXPECTED_OUTPUT = "Hello from the mock.\n(10 tokens in, 5 out)\nHello from the mock.\n"


@pytest.mark.real_codex
async def test_the_python_sdk_snippet(agent_proxy, mock_upstream, tmp_path):
    [snippet] = readme_blocks("The openai SDKs", "python")
    script = tmp_path / "example.py"
    script.write_text(with_test_proxy(snippet, agent_proxy))
    assert await run([sys.executable, str(script)]) == EXPECTED_OUTPUT
    check_the_agent_loop(mock_upstream.requests)


@pytest.mark.real_codex
async def test_the_node_sdk_snippet(agent_proxy, mock_upstream, tmp_path):
    node_modules = os.environ.get("CODEX_OPENAI_PROXY_TEST_NODE_PATH") or str(
        REPO / ".tools" / "node" / "node_modules")
    if not os.path.isdir(os.path.join(node_modules, "openai")):
        pytest.fail(f"the openai npm package is not installed in {node_modules}: "
                    "run bash scripts/test.sh")
    [snippet] = readme_blocks("The openai SDKs", "js")
    # An ES module finds `openai` in a node_modules folder beside it (NODE_PATH is for
    # require() only).
    (tmp_path / "node_modules").symlink_to(node_modules)
    script = tmp_path / "example.mjs"
    script.write_text(with_test_proxy(snippet, agent_proxy))
    assert await run(["node", str(script)]) == EXPECTED_OUTPUT
    check_the_agent_loop(mock_upstream.requests)


@pytest.mark.real_codex
async def test_the_curl_snippet(agent_proxy, mock_upstream):
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed")
    [snippet] = readme_blocks("curl", "bash")
    output = await run(["bash", "-euc", with_test_proxy(snippet, agent_proxy)])
    stream, models = output.split("data: [DONE]\n\n")
    events = [json.loads(line.removeprefix("data: ")) for line in stream.splitlines() if line]
    assert "".join(event["choices"][0]["delta"].get("content") or ""
                   for event in events if event["choices"]) == "Hello from the mock."
    assert events[-1]["usage"]["total_tokens"] == 15
    assert json.loads(models)["data"][0]["id"] == PINNED_DEFAULT_MODEL
    assert mock_upstream.requests[0].body["reasoning"]["effort"] == "medium"
