"""Models and reasoning efforts from Codex's own catalog: the pure part, then end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from codex_openai_proxy.catalog import CatalogError, ModelCatalog, parse_catalog
from codex_openai_proxy.errors import ApiError

from conftest import AUTH, TESTS, chat_body, listening_url

REAL_CATALOG = (TESTS / "fixtures" / "codex-0.169.0-models.json").read_text()
# What codex-cli 0.169.0 lists (visibility "list"), in its catalog order.
LISTED_0_169 = ["gpt-6-astra", "gpt-6.1-sol", "gpt-6.1-terra", "gpt-6-sol", "gpt-6-luna",
                "gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-5.5"]


def catalog(**kwargs) -> ModelCatalog:
    return ModelCatalog("gpt-5", models=parse_catalog(REAL_CATALOG), **kwargs)


# -- pure ----------------------------------------------------------------------------------


def test_codex_model_first_then_listed_models_in_catalog_order():
    ids = [row[0] for row in catalog().listed()]
    assert ids == ["gpt-5", *LISTED_0_169]
    assert "codex-auto-review" not in ids and "gpt-daybreak-red-latest" not in ids


def test_a_codex_model_from_the_catalog_is_not_listed_twice():
    rows = ModelCatalog("gpt-5.5", models=parse_catalog(REAL_CATALOG)).listed()
    ids = [row[0] for row in rows]
    assert ids[0] == "gpt-5.5" and ids.count("gpt-5.5") == 1


def test_effort_variants_when_enabled():
    ids = [row[0] for row in catalog(effort_models=True).listed()]
    assert "gpt-5.5:xhigh" in ids and "gpt-5.5:max" not in ids
    assert "gpt-6-astra:ultra" in ids
    assert ids.index("gpt-5.5") < ids.index("gpt-5.5:low")
    assert catalog(effort_models=True).resolve("gpt-5.5:high").codex_model == "gpt-5.5"
    assert catalog(effort_models=True).resolve("gpt-5.5:high").effort_from_id == "high"
    # Off, or not an effort: the id is a model name like any other.
    assert catalog().resolve("gpt-5.5:high").codex_model == "gpt-5.5:high"
    assert catalog(effort_models=True).resolve("ft:gpt:x").codex_model == "ft:gpt:x"


def test_efforts_are_checked_against_the_models_entry():
    catalog().check_effort("gpt-6-astra", "ultra", "reasoning_effort")
    with pytest.raises(ApiError) as caught:
        catalog().check_effort("gpt-5.5", "max", "reasoning_effort")
    error = caught.value
    assert error.status == 400 and error.param == "reasoning_effort"
    assert error.code == "invalid_reasoning_effort"
    assert "low, medium, high, xhigh" in error.message
    # A model the catalog does not know: Codex decides.
    catalog().check_effort("gpt-5", "ultra", "reasoning_effort")
    catalog().check_effort("gpt-5.5", None, "reasoning_effort")


@pytest.mark.parametrize("text", ["not json", "[]", '{"models": 3}'])
def test_an_unreadable_catalog_says_why(text):
    with pytest.raises(CatalogError):
        parse_catalog(text)


def test_entries_it_cannot_use_are_skipped():
    models = parse_catalog(json.dumps({"models": [{"display_name": "no slug"}, 7,
                                                  {"slug": "x", "visibility": "list"}]}))
    assert [model.slug for model in models] == ["x"]
    assert models[0].efforts == () and models[0].listed


# -- end to end, with the fake Codex printing the real 0.169.0 catalog ------------------------


async def test_models_endpoint_lists_the_catalog(proxy):
    data = (await proxy.client.get("/v1/models")).json()["data"]
    # Without CODEX_MODEL, Codex's own default (its catalog's first: priority 1) comes first.
    assert [model["id"] for model in data] == [
        "gpt-6.1-sol", *(m for m in LISTED_0_169 if m != "gpt-6.1-sol")]
    sol = next(model for model in data if model["id"] == "gpt-6.1-sol")
    assert sol["object"] == "model" and sol["owned_by"] == "codex-openai-proxy"
    assert sol["display_name"] == "GPT-6.1-Sol"
    assert sol["supported_reasoning_efforts"] == ["low", "medium", "high", "xhigh", "max",
                                                  "ultra"]
    one = await proxy.client.get("/v1/models/gpt-5.5")
    assert one.json()["supported_reasoning_efforts"] == ["low", "medium", "high", "xhigh"]


async def test_a_wrong_effort_for_the_model_is_a_400_listing_the_right_ones(proxy, fake_codex):
    response = await proxy.client.post(
        "/v1/chat/completions", json=chat_body(model="gpt-5.5", reasoning_effort="ultra"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "reasoning_effort" and "low, medium, high, xhigh" in error["message"]
    assert fake_codex.runs() == []
    response = await proxy.client.post(
        "/v1/chat/completions", json=chat_body(model="gpt-6-astra", reasoning={"effort": "max"}))
    assert response.status_code == 200
    assert 'model_reasoning_effort="max"' in fake_codex.runs()[0]["argv"]


async def test_effort_model_ids_select_model_and_effort(start_proxy, fake_codex):
    proxy = await start_proxy(effort_models=True)
    ids = [m["id"] for m in (await proxy.client.get("/v1/models")).json()["data"]]
    assert "gpt-5.5:high" in ids
    response = await proxy.client.post("/v1/chat/completions",
                                       json=chat_body(model="gpt-5.5:high"))
    assert response.json()["model"] == "gpt-5.5:high"  # answered with the id it asked for
    argv = fake_codex.runs()[0]["argv"]
    assert argv[argv.index("-m") + 1] == "gpt-5.5"
    assert 'model_reasoning_effort="high"' in argv
    bad = await proxy.client.post("/v1/chat/completions", json=chat_body(model="gpt-5.5:max"))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "model"


@pytest.mark.parametrize("codex_model", ["", "default"])
async def test_without_codex_model_the_users_codex_config_chooses(start_proxy, fake_codex,
                                                                  tmp_path, codex_model):
    (tmp_path / ".codex").mkdir()
    (tmp_path / ".codex" / "config.toml").write_text('model = "gpt-5.5"\n')
    proxy = await start_proxy(codex_model=codex_model)  # HOME is tmp_path
    assert (await proxy.client.get("/v1/models")).json()["data"][0]["id"] == "gpt-5.5"
    assert (await proxy.client.get("/healthz")).json()["default_model"] == "gpt-5.5"
    for body in ({"messages": [{"role": "user", "content": "hi"}]},
                 {"model": "default", "messages": [{"role": "user", "content": "hi"}]}):
        response = await proxy.client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200  # answered with the id it asked for, if any
    assert [run["argv"][run["argv"].index("-m") + 1] for run in fake_codex.runs()] == [
        "gpt-5.5", "gpt-5.5"]


async def test_codex_model_names_the_default(start_proxy, fake_codex):
    proxy = await start_proxy(codex_model="gpt-5")
    assert (await proxy.client.get("/v1/models")).json()["data"][0]["id"] == "gpt-5"
    await proxy.client.post("/v1/chat/completions", json={"messages": [
        {"role": "user", "content": "hi"}]})
    argv = fake_codex.runs()[0]["argv"]
    assert argv[argv.index("-m") + 1] == "gpt-5"


async def test_an_unreadable_catalog_leaves_the_pinned_default_alone(start_proxy, caplog):
    proxy = await start_proxy(env={"FAKE_CODEX_CATALOG": "fail"})
    data = (await proxy.client.get("/v1/models")).json()["data"]
    assert [model["id"] for model in data] == ["gpt-6.1-sol"]
    assert "failed to load the model catalog" in caplog.text
    assert (await proxy.client.post("/v1/chat/completions", json=chat_body(
        reasoning_effort="ultra"))).status_code == 200


async def test_the_model_metadata_warning_is_logged_once_and_never_sent(proxy, caplog):
    for _ in range(3):
        response = await proxy.client.post("/v1/chat/completions", json=chat_body())
        assert "metadata" not in response.text
    await proxy.manager.wait_idle()
    warnings = [r for r in caplog.records if "Model metadata" in r.getMessage()
                and r.levelname == "WARNING"]
    assert len(warnings) == 1


async def test_sighup_reads_the_catalog_again(fake_codex, tmp_path: Path):
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps({"models": [{"slug": "old-model", "visibility": "list"}]}))
    env = {**os.environ, **fake_codex.env, "PORT": "0", "CODEX_ENGINE": "exec",
           "FAKE_CODEX_CATALOG": str(catalog_file)}
    server = await trio.lowlevel.open_process([sys.executable, "-m", "codex_openai_proxy"],
                                              env=env, stderr=subprocess.PIPE)
    try:
        url = await listening_url(server)
        async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
            ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
            assert ids == ["old-model"]
            catalog_file.write_text(json.dumps({"models": [{"slug": "new-model",
                                                            "visibility": "list"}]}))
            server.send_signal(signal.SIGHUP)
            buffered = b""
            with trio.fail_after(20):
                while b"Codex's model catalog: 1 models" not in buffered:
                    data = await server.stderr.receive_some()
                    assert data, buffered.decode()
                    buffered += data
            ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
            assert ids == ["new-model"]
    finally:
        with trio.CancelScope(shield=True):
            server.kill()
            await server.wait()
