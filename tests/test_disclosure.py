"""What a client is never shown: file paths, secrets, backtraces, Codex's raw error output. It
is told what failed, in the proxy's words or in Codex's own made safe to show; the proxy's log
has the whole text. And `/healthz` without the API key says whether the proxy can answer, not
where anything is."""

from __future__ import annotations

import json
import logging

import pytest

from codex_openai_proxy.codex_events import safe_for_client

from conftest import chat_body, open_stream
from fake_codex import CONFIG_PATH, CONFIG_SECRET

#: What may never reach a client, from the fake's broken config.toml and its crash.
NEVER_SHOWN = (CONFIG_SECRET, CONFIG_PATH, "/home/someone", "AbsolutePathBuf", "panicked",
               "lib.rs", 'http_headers = "Bearer')


@pytest.fixture(params=["exec", "app-server"])
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def assert_nothing_private(text: str) -> None:
    for private in NEVER_SHOWN:
        assert private not in text, f"{private!r} shown to the client: {text}"


@pytest.mark.parametrize("scenario", ["config_error", "crash"])
async def test_a_codex_failure_shows_no_path_secret_or_backtrace(start_proxy, scenario, caplog):
    proxy = await start_proxy(scenario)
    with caplog.at_level(logging.WARNING, logger="codex_openai_proxy"):
        response = await proxy.client.post("/v1/chat/completions", json=chat_body())
        async with open_stream(proxy.client) as stream:
            events = await stream.read_to_end()
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "codex_error"
    assert "Codex" in error["message"] and "log" in error["message"]
    assert_nothing_private(response.text)
    assert events[-2]["error"]["code"] == "codex_error"
    assert_nothing_private(json.dumps(events))
    # The operator still has the whole story.
    logged = caplog.text
    assert (CONFIG_SECRET if scenario == "config_error" else "panicked") in logged


async def test_codex_missing_says_what_to_do_not_where_it_looked(start_proxy, tmp_path):
    missing = tmp_path / "nowhere" / "codex"
    proxy = await start_proxy(codex_bin=str(missing))
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "codex_not_found"
    assert "npm i -g @openai/codex" in error["message"] and "CODEX_BIN" in error["message"]
    assert str(tmp_path) not in response.text


async def test_healthz_without_the_key_names_no_path(start_proxy, tmp_path):
    missing = tmp_path / "nowhere" / "codex"
    proxy = await start_proxy(codex_bin=str(missing))
    public = await proxy.client.get("/healthz", headers={"Authorization": ""})
    assert public.status_code == 200
    body = public.json()
    assert body["ok"] is False, "the proxy cannot answer without Codex"
    assert body["codex"] == {"found": False, "version": None}
    assert set(body) == {"ok", "codex", "engine", "default_model", "runs", "spares"}
    assert str(tmp_path) not in public.text and "PATH" not in public.text

    # The operator asks for more, with the key.
    assert (await proxy.client.get("/healthz?verbose",
                                   headers={"Authorization": ""})).status_code == 401
    verbose = (await proxy.client.get("/healthz?verbose")).json()
    assert str(missing) in verbose["codex"]["problem"]


async def test_healthz_with_codex_found(proxy, fake_codex):
    public = (await proxy.client.get("/healthz", headers={"Authorization": ""})).json()
    assert public["ok"] is True
    assert public["codex"] == {"found": True, "version": "0.169.0"}
    verbose = (await proxy.client.get("/healthz?verbose")).json()
    assert verbose["codex"]["path"] == str(fake_codex.bin) and verbose["codex"]["problem"] is None


@pytest.mark.parametrize(("text", "shown"), [
    # Codex's (and the upstream's) own words stay: they tell the user what to do.
    ("upstream exploded", "upstream exploded"),
    ("unexpected status 401 Unauthorized: Missing bearer or basic authentication in header, "
     "url: https://api.openai.com/v1/responses",
     "unexpected status 401 Unauthorized: Missing bearer or basic authentication in header, "
     "url: https://api.openai.com/v1/responses"),
    ("You've hit your usage limit. Upgrade at https://chatgpt.com/explore/pro, or try again at "
     "3:45 PM.", "You've hit your usage limit. Upgrade at https://chatgpt.com/explore/pro, or "
     "try again at 3:45 PM."),
    ("Reconnecting... 2/5 (stream disconnected)", "Reconnecting... 2/5 (stream disconnected)"),
    # What they may carry besides goes.
    ('failed to load configuration: /home/u/.codex/config.toml:5:16: invalid type: string '
     '"Bearer sk-proj-abc0123456789", expected a map',
     'failed to load configuration: <path>:5:16: invalid type: string "Bearer <redacted>", '
     'expected a map'),
    ("request to https://user:pw@example.com/v1/x?api_key=sk-abc0123456789 failed",
     "request to https://example.com/v1/x failed"),
    ("auth failed: token=ghp_0123456789abcdef, password: hunter22",
     "auth failed: token=<redacted>, password: <redacted>"),
    ("Error loading config.toml:\n  |\n5 | key = \"s3cret\"\n  |     ^\nstack backtrace:\n"
     "   0: codex::main\n             at ./src/main.rs:10", "Error loading config.toml:"),
    ("codex_home: AbsolutePathBuf(\"/home/u/.codex\") and ~/.codex/auth.json",
     "codex_home: AbsolutePathBuf(\"<path>\") and <path>"),
])
def test_what_is_shown_of_codex_words(text: str, shown: str) -> None:
    assert safe_for_client(text) == shown


BROKEN_CONFIGS = {
    # A header line with the token, then a line that breaks the file: 0.169.0 quotes the path
    # and, around the error, the file's lines.
    "syntax": 'http_headers = { "Authorization" = "Bearer {secret}" }\nbroken = = 1\n',
    # A value of the wrong type: 0.169.0 quotes the value itself.
    "type": 'http_headers = "Bearer {secret}"\n',
}


@pytest.mark.real_codex
@pytest.mark.parametrize("broken", [*BROKEN_CONFIGS, "home_is_a_file"])
async def test_the_real_codex_with_a_broken_home_shows_no_path_or_secret(
        start_real_proxy, mock_upstream, tmp_path, engine, broken, caplog):
    secret = "sk-proj-REAL0123456789abcdefSECRET"
    proxy = await start_real_proxy(engine=engine)
    home = tmp_path / "codex-home"
    if broken == "home_is_a_file":
        (home / "config.toml").unlink()
        home.rmdir()
        home.write_text("not a directory\n")
    else:
        config = (home / "config.toml").read_text()
        (home / "config.toml").write_text(
            config + BROKEN_CONFIGS[broken].replace("{secret}", secret))
    with caplog.at_level(logging.WARNING, logger="codex_openai_proxy"):
        response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 502, response.text
    for private in (secret, str(tmp_path), "AbsolutePathBuf", "Bearer"):
        assert private not in response.text, f"{private!r} shown: {response.text}"
    # The operator gets Codex's own account. (On app-server it names the child's Codex home,
    # which starts from the user's config.)
    assert "Codex failed" in caplog.text
    if broken != "home_is_a_file":
        assert "config.toml:" in caplog.text
    assert mock_upstream.requests == []
