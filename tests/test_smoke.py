"""scripts/smoke.sh against a live proxy and the fake Codex: it passes on a working proxy, and
on each kind of breakage it stops at the first failure with one line that says what failed."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import trio

from conftest import API_KEY, REPO

SMOKE = REPO / "scripts" / "smoke.sh"


async def smoke(tmp_path: Path, url: str, **env: str) -> tuple[int, str]:
    home = tmp_path / "smoke-home"  # no installed env file to read settings from
    home.mkdir(exist_ok=True)
    full_env = {**os.environ, "HOME": str(home), "PROXY_API_KEY": API_KEY, **env}
    for name in ("PORT", "CODEX_MODEL", "XDG_CONFIG_HOME"):
        if name not in env:
            full_env.pop(name, None)
    result = await trio.run_process([shutil.which("bash"), str(SMOKE), url], env=full_env,
                                    capture_stdout=True, capture_stderr=True, check=False)
    return result.returncode, result.stdout.decode() + result.stderr.decode()


async def test_smoke_passes_against_a_working_proxy(start_proxy, tmp_path):
    proxy = await start_proxy()
    status, said = await smoke(tmp_path, f"{proxy.url}/v1")
    assert status == 0, said
    assert said.splitlines() == [
        "smoke: ok    GET /healthz",
        "smoke: ok    GET /v1/models lists gpt-6.1-sol",  # the proxy's default model
        "smoke: ok    POST /v1/chat/completions streamed an answer: role, content, stop, [DONE]",
        "smoke: ok    GET /v1/usage: no limits reported (Codex reports them on a ChatGPT login)",
    ]


async def test_smoke_reads_the_key_and_port_from_the_installed_env_file(start_proxy, tmp_path):
    proxy = await start_proxy()
    port = proxy.url.rsplit(":", 1)[1]
    env_file = tmp_path / "smoke-home" / ".config" / "codex-openai-proxy" / "env"
    env_file.parent.mkdir(parents=True)
    env_file.write_text(f'PORT="{port}"\nPROXY_API_KEY="{API_KEY}"\nCODEX_MODEL="gpt-5.5"\n')
    home = tmp_path / "smoke-home"
    env = {key: value for key, value in os.environ.items()
           if key not in ("PORT", "PROXY_API_KEY", "CODEX_MODEL", "XDG_CONFIG_HOME")}
    result = await trio.run_process([shutil.which("bash"), str(SMOKE)],
                                    env={**env, "HOME": str(home)},
                                    capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


async def test_smoke_names_a_codex_failure(start_proxy, tmp_path):
    proxy = await start_proxy("turn_failed")
    status, said = await smoke(tmp_path, f"{proxy.url}/v1")
    assert status == 1
    assert said.splitlines()[:2] == ["smoke: ok    GET /healthz",
                                     "smoke: ok    GET /v1/models lists gpt-6.1-sol"]
    failure = said.splitlines()[2]
    assert failure.startswith("smoke: FAIL: ")
    assert "codex_error" in failure


async def test_smoke_names_a_wrong_key(start_proxy, tmp_path):
    proxy = await start_proxy()
    status, said = await smoke(tmp_path, f"{proxy.url}/v1", PROXY_API_KEY="wrong")
    assert status == 1
    assert "smoke: FAIL: GET /v1/models answered 401" in said
    assert "invalid_api_key" in said


async def test_smoke_names_a_model_that_is_not_listed(start_proxy, tmp_path):
    proxy = await start_proxy()
    status, said = await smoke(tmp_path, f"{proxy.url}/v1", CODEX_MODEL="no-such-model")
    assert status == 1
    assert "smoke: FAIL: GET /v1/models does not list no-such-model" in said


async def test_smoke_names_a_proxy_that_is_not_running(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, said = await smoke(tmp_path, f"http://127.0.0.1:{port}/v1")
    assert status == 1
    assert said.startswith(f"smoke: FAIL: cannot reach http://127.0.0.1:{port}/healthz")
    assert "\n" not in said.strip()


async def test_smoke_names_a_proxy_that_cannot_find_codex(start_proxy, tmp_path):
    proxy = await start_proxy(codex_bin=str(tmp_path / "no-codex"))
    status, said = await smoke(tmp_path, f"{proxy.url}/v1")
    assert status == 1
    assert "smoke: FAIL: the proxy runs but cannot find Codex" in said



@pytest.mark.real_codex
async def test_smoke_shows_the_plan_s_limits_codex_reported(start_real_proxy, mock_upstream,
                                                           tmp_path):
    from mock_responses import PlanLimits

    mock_upstream.limits = PlanLimits(primary_used_percent=42.5, primary_resets_in_s=8217)
    proxy = await start_real_proxy(engine="app-server")
    status, said = await smoke(tmp_path, f"{proxy.url}/v1")
    assert status == 0, said
    assert said.splitlines()[-1] == (
        "smoke: ok    GET /v1/usage: 5-hour 43% used, resets in 2 h 16 min; "
        "weekly 13% used, resets in 76 h 59 min")
