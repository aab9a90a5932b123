"""Each app-server child runs in a Codex home of its own: linked to the user's settings and
login, and to nothing else of theirs (no AGENTS.md, memories, skills or sessions); the
conversation's rollout file is in it; the user's MCP servers are switched off; it is gone
with the run. A login kept in the keyring (found only from the user's own home) keeps the
child in the user's home, and the rollout file is removed after the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from codex_openai_proxy.codex_setup import user_codex_home

from conftest import chat_body


@pytest.fixture
def engine() -> str:
    return "app-server"


def user_home(tmp_path: Path, config: str = "", auth: bool = True) -> Path:
    home = tmp_path / ".codex"  # HOME is tmp_path for the fake Codex's proxy
    (home / "sessions").mkdir(parents=True)
    (home / "config.toml").write_text(config)
    if auth:
        (home / "auth.json").write_text('{"tokens": {}}')
    (home / "AGENTS.md").write_text("Always answer in pirate speak.")
    (home / "memories").mkdir()
    return home


async def test_a_child_home_links_the_users_settings_and_login_and_nothing_else(
        start_proxy, fake_codex, tmp_path):
    home = user_home(tmp_path, '[mcp_servers.github]\ncommand = "gh-mcp"\n'
                               '[mcp_servers."odd.name"]\ncommand = "x"\n')
    proxy = await start_proxy()
    await proxy.server.locator.children_set_up.wait()
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    [run] = fake_codex.runs()
    assert run["codex_home_links"] == {"auth.json": str(home / "auth.json"),
                                       "config.toml": str(home / "config.toml"),
                                       "state_5.sqlite": None,  # the seed's, copied
                                       "sessions": None}
    await proxy.manager.wait_idle()
    assert not Path(run["codex_home"]).exists()  # gone with the run
    argv = run["argv"]
    assert "-c mcp_servers.github.enabled=false" in argv
    assert not any("odd.name" in arg for arg in argv)  # a name -c cannot address: logged
    assert sorted(p.name for p in (home / "sessions").iterdir()) == []


async def test_a_keyring_login_keeps_the_child_in_the_users_home(start_proxy, fake_codex,
                                                                 tmp_path):
    home = user_home(tmp_path, 'cli_auth_credentials_store = "keyring"\n', auth=False)
    proxy = await start_proxy()
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    [run] = fake_codex.runs()
    assert run["codex_home"] == str(home)
    assert run["history"]  # the rollout was there to resume...
    await proxy.manager.wait_idle()
    assert list((home / "sessions").rglob("rollout-*")) == []  # ... and is gone after


@pytest.mark.parametrize(("config", "auth", "keyring"), [
    ("", True, False),
    ('cli_auth_credentials_store = "file"\n', False, False),
    ('cli_auth_credentials_store = "keyring"\n', True, True),
    ('cli_auth_credentials_store = "auto"\n', False, True),
    ('cli_auth_credentials_store = "auto"\n', True, False),
])
def test_where_the_login_is(tmp_path, config, auth, keyring):
    user_home(tmp_path, config, auth)
    assert user_codex_home({"HOME": str(tmp_path)}).keyring_login is keyring


def test_the_users_codex_home_is_codex_home_if_set(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "config.toml").write_text('model = "gpt-5.5"\n')
    found = user_codex_home({"HOME": "/nonexistent", "CODEX_HOME": str(tmp_path / "elsewhere")})
    assert (found.path, found.model, found.problem) == (tmp_path / "elsewhere", "gpt-5.5", None)


def test_an_unreadable_config_is_a_problem_not_a_crash(tmp_path):
    user_home(tmp_path, "this is = = not toml")
    found = user_codex_home({"HOME": str(tmp_path)})
    assert found.problem and "config.toml" in found.problem
    assert found.mcp_servers == () and found.model is None


async def test_a_child_home_starts_from_the_seeds_databases(start_proxy, fake_codex, tmp_path):
    user_home(tmp_path)
    proxy = await start_proxy()
    await proxy.server.locator.children_set_up.wait()
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    [run] = fake_codex.runs()
    # The seed child made the databases once; this child's home had copies from its start.
    assert run["codex_home_links"]["state_5.sqlite"] is None  # a copy, not a link
    [seed] = [r for r in fake_codex.runs(idle=True) if r["pid"] != run["pid"]]
    assert "state_5.sqlite" not in seed["codex_home_links"]
