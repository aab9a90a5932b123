"""A Codex child does the model's request and nothing else: no login shell, no git, no
`lsb_release`, no call but the one to the model. Checked with the real Codex 0.169.0 against
the mock upstream, with every program it could start replaced by one that leaves a mark."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import chat_body

pytestmark = pytest.mark.real_codex

#: Programs codex-cli 0.169.0 starts per process or per thread unless told not to: git for the
#: plugin sync, lsb_release for its User-Agent, bash for the login-shell snapshot.
WATCHED = ("git", "lsb_release", "bash")


@pytest.mark.parametrize("tools", [False, True])
async def test_a_run_starts_no_program_and_calls_only_the_model(start_real_proxy,
                                                                mock_upstream, tmp_path, tools):
    marks = tmp_path / "marks"
    marks.mkdir()
    watched = tmp_path / "watched-bin"
    watched.mkdir()
    for program in WATCHED:
        (watched / program).write_text(f'#!/bin/sh\ntouch "{marks}/{program}"\n'
                                       f'exec /usr/bin/env -u PATH {program} "$@"\n')
        (watched / program).chmod(0o755)
    # The login shell would source this: a snapshot leaves its mark even with bash elsewhere.
    (tmp_path / ".bashrc").write_text(f'touch "{marks}/bashrc"\n')
    (tmp_path / ".bash_profile").write_text(f'touch "{marks}/bash_profile"\n')
    proxy = await start_real_proxy(engine="app-server", env={
        "PATH": f"{watched}{os.pathsep}{os.environ.get('PATH', os.defpath)}"})
    body = chat_body(model="gpt-5.5")
    if tools:
        body["tools"] = [{"type": "function", "function": {
            "name": "read_file", "parameters": {"type": "object", "properties": {}}}}]
    response = await proxy.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    await proxy.manager.wait_idle()
    assert sorted(path.name for path in marks.iterdir()) == []
    assert [request.path for request in mock_upstream.requests] == ["/v1/responses"]


async def test_the_operators_overrides_come_last_and_win(start_real_proxy, mock_upstream):
    # PROXY_CODEX_CONFIG opts back in to what the proxy switches off (here: web search).
    proxy = await start_real_proxy(engine="app-server",
                                   codex_config=('web_search="live"',))
    response = await proxy.client.post("/v1/chat/completions", json=chat_body(model="gpt-5.5"))
    assert response.status_code == 200
    assert "web_search" in mock_upstream.requests[0].tool_names()


def test_the_watched_programs_exist():
    # Each watched program must be one the machine has, or its mark would prove nothing.
    for program in WATCHED:
        assert any((Path(d) / program).exists() for d in ("/usr/bin", "/bin")), program
