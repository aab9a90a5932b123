"""The command line: bad settings and a taken port stop the start with one clear line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import trio


async def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, "-m", "codex_openai_proxy", *args],
            env={**os.environ, **(env or {})}, capture_stdout=True, capture_stderr=True,
            check=False,
        )


async def test_a_bad_setting_names_its_variable():
    result = await run_cli(env={"PORT": "eleven"})
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "codex-openai-proxy: invalid PORT='eleven': must be a whole number")


async def test_a_bad_flag_names_its_flag():
    result = await run_cli("--request-timeout-s", "-3")
    assert result.returncode == 2
    assert "PROXY_REQUEST_TIMEOUT_S (--request-timeout-s)" in result.stderr.decode()


async def test_a_taken_port_is_one_line_not_a_traceback(fake_codex):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await run_cli("--port", str(port), env=fake_codex.env)
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert f"cannot serve on 127.0.0.1:{port}: Address already in use" in stderr
    assert "Traceback" not in stderr


async def test_the_default_model_is_printed_for_the_flag_and_its_abbreviations(fake_codex):
    # argparse takes an unambiguous abbreviation of a flag: `--print-default` once passed the
    # parser, was missed by a look for the whole flag, and started the server instead.
    for flag in ("--print-default-model", "--print-default"):
        result = await run_cli(flag, env={**fake_codex.env, "CODEX_MODEL": "gpt-5.5"})
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode() == "gpt-5.5\n"
