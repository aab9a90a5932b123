"""Chat completions end to end: a real server, real Codex children (the fake CLI), real HTTP."""

from __future__ import annotations

import json
import os

import pytest
import trio

from conftest import (
    FAKE_CODEX,
    chat_body,
    choices,
    data_url,
    delta,
    is_ready,
    open_stream,
    png_header,
)


async def test_stream_has_openai_shape_in_order(proxy):
    async with open_stream(proxy.client, chat_body(stream_options={"include_usage": True})) as s:
        assert s.response.status_code == 200
        assert s.response.headers["content-type"].startswith("text/event-stream")
        assert s.response.headers["cache-control"] == "no-cache"
        assert s.response.headers["x-accel-buffering"] == "no"
        events = await s.read_to_end()

    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert {c["created"] for c in chunks} == {chunks[0]["created"]}
    assert {c["model"] for c in chunks} == {"gpt-5"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert delta(chunks[0]) == {"role": "assistant", "content": ""}
    assert s.reasoning == "**Thinking** about it"
    assert s.content == "Hello from fake Codex."
    stop, usage = chunks[-2], chunks[-1]
    assert delta(stop) == {} and stop["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"] == {
        "prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 20},
        "completion_tokens_details": {"reasoning_tokens": 10},
        # The cached tokens again, under the only name Roo Code's handler reads.
        "cache_read_input_tokens": 20,
    }
    # Roo Code's parser wants bare `data:` lines: no `event:` lines, ever.
    assert not [line for line in s.raw_lines if line.startswith("event:")]


async def test_stream_without_include_usage_has_no_usage_chunk(proxy):
    async with open_stream(proxy.client) as s:
        events = await s.read_to_end()
    assert events[-1] == "[DONE]"
    assert all(choices(e) for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_non_stream_completion(proxy):
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-5"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Hello from fake Codex."
    assert choice["message"]["reasoning_content"] == "**Thinking** about it"
    assert body["usage"]["prompt_tokens"] == 120
    assert body["usage"]["total_tokens"] == 150


async def test_the_model_asked_for_is_echoed_and_passed_to_codex(proxy, fake_codex):
    response = await proxy.client.post("/v1/chat/completions",
                                       json=chat_body(model="gpt-5.5", reasoning_effort="high"))
    assert response.json()["model"] == "gpt-5.5"
    argv = fake_codex.runs()[0]["argv"]
    assert argv[argv.index("-m") + 1] == "gpt-5.5"
    assert 'model_reasoning_effort="high"' in argv


async def test_reasoning_object_effort_is_accepted(proxy, fake_codex):
    response = await proxy.client.post(
        "/v1/chat/completions", json=chat_body(reasoning={"effort": "low"}))
    assert response.status_code == 200
    assert 'model_reasoning_effort="low"' in fake_codex.runs()[0]["argv"]


async def test_codex_argv_stdin_scratch_dir_and_environment(proxy, fake_codex):
    body = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Part one, "},
                                     {"type": "text", "text": "part two."}]},
    ]}
    response = await proxy.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    [run] = fake_codex.runs()
    argv = run["argv"]
    assert argv[:2] == ["exec", "--json"]
    assert argv[-2:] == ["--", "-"], "the prompt must come from stdin, after `--`"
    for flag in ("--skip-git-repo-check", "--ephemeral"):
        assert flag in argv
    assert argv[argv.index("--sandbox") + 1] == "read-only"
    assert 'forced_login_method="chatgpt"' in argv
    assert "--ask-for-approval" not in argv and "--reasoning" not in argv
    assert run["stdin"].index("[system]\nBe brief.") < run["stdin"].index(
        "[user]\nPart one, part two.")
    # Codex ran in an empty scratch directory of its own, removed after the run.
    scratch = argv[argv.index("-C") + 1]
    assert run["cwd"] == scratch and run["cwd_entries"] == []
    await proxy.manager.wait_idle()  # the response may leave before the run is cleaned up
    assert not os.path.exists(scratch)
    # In its own session, so its whole process group can be signalled.
    assert run["sid"] == run["pid"] == run["pgid"]
    assert run["has_proxy_api_key"] is False


async def test_a_400_kb_prompt_goes_through_stdin(proxy, fake_codex):
    big = "x" * (400 * 1024)
    response = await proxy.client.post("/v1/chat/completions", json=chat_body(big))
    assert response.status_code == 200
    [run] = fake_codex.runs()
    assert big in run["stdin"]
    assert all(len(arg) < 1000 for arg in run["argv"])


async def test_a_prompt_that_looks_like_a_flag_is_only_a_prompt(proxy, fake_codex):
    response = await proxy.client.post("/v1/chat/completions", json=chat_body("--help"))
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from fake Codex."
    assert "--help" in fake_codex.runs()[0]["stdin"]


async def test_operational_events_never_reach_the_client(start_proxy):
    proxy = await start_proxy("operational")
    async with open_stream(proxy.client) as s:
        await s.read_to_end()
    raw = "\n".join(s.raw_lines)
    for leaked in ("SECRET", "ls -la", "a.txt", "weather", "Reconnecting", "plan",
                   "Model metadata"):
        assert leaked not in raw
    assert s.content == "Hello from fake Codex."


async def test_incremental_mode_sends_every_message_a_blank_line_apart(start_proxy):
    proxy = await start_proxy("two_messages")
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.json()["choices"][0]["message"]["content"] == (
        "First message.\n\nHello from fake Codex.")
    async with open_stream(proxy.client) as s:
        await s.read_to_end()
    assert [delta(e).get("content") for e in s.events[1:3]] == [
        "First message.", "\n\nHello from fake Codex."]


async def test_final_mode_sends_only_the_last_message(start_proxy):
    proxy = await start_proxy("two_messages", stream_mode="final")
    async with open_stream(proxy.client) as s:
        await s.read_to_end()
    assert s.content == "Hello from fake Codex."
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.json()["choices"][0]["message"]["content"] == "Hello from fake Codex."


async def test_stray_lines_on_stdout_do_not_spoil_a_good_answer(start_proxy):
    proxy = await start_proxy("noisy")
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from fake Codex."


async def test_a_long_answer_arrives_whole(start_proxy):
    size = 3 * 1024 * 1024
    proxy = await start_proxy("long", env={"FAKE_CODEX_LONG_BYTES": str(size)})
    async with open_stream(proxy.client) as s:
        await s.read_to_end()
    assert len(s.content) == size
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert len(response.json()["choices"][0]["message"]["content"]) == size


async def test_unknown_knobs_are_accepted_and_ignored(proxy):
    body = chat_body(temperature=0.2, top_p=0.9, max_tokens=10, presence_penalty=0.1,
                     frequency_penalty=0.1, seed=3, user="me", logit_bias={"1": 2},
                     metadata={"a": "b"}, store=False)
    response = await proxy.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200


async def test_plain_mode_when_codex_has_no_json_flag(start_proxy, fake_codex, tmp_path):
    # An older Codex whose `exec --help` lacks --json: the final message is stdout.
    old_help = tmp_path / "old-help.txt"
    real_help = (FAKE_CODEX.parent / "fixtures" / "codex-0.169.0-exec-help.txt").read_text()
    old_help.write_text("\n".join(line for line in real_help.splitlines()
                                  if "--json" not in line))
    wrapper = fake_codex.bin
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = exec ] && [ "$2" = --help ]; then cat "{old_help}"; exit 0; fi\n'
        + wrapper.read_text().split("\n", 1)[1]
    )
    proxy = await start_proxy("normal")
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from fake Codex."
    assert "--json" not in fake_codex.runs()[0]["argv"]


async def test_models_and_health(proxy):
    models = (await proxy.client.get("/v1/models")).json()
    assert models["object"] == "list"
    assert models["data"][0]["id"] == "gpt-6.1-sol"  # Codex's own default
    assert models["data"][0]["object"] == "model"
    one = await proxy.client.get("/v1/models/gpt-5.5")
    assert one.status_code == 200 and one.json()["id"] == "gpt-5.5"
    missing = await proxy.client.get("/v1/models/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"

    health = await proxy.client.get("/healthz", headers={"Authorization": ""})
    assert health.status_code == 200
    body = health.json()
    assert body["ok"] is True
    assert body["codex"]["found"] is True
    assert body["codex"]["version"] == "0.169.0"
    assert body["engine"] == "exec"
    assert body["default_model"] == "gpt-6.1-sol"
    assert json.dumps(body)  # plain JSON all the way down


async def test_silence_is_filled_with_keepalive_comments(start_proxy):
    proxy = await start_proxy("hang", keepalive_s=0.05)
    async with open_stream(proxy.client) as s:
        await s.wait_for(is_ready)
        assert await s.next_line() == ": keep-alive"
        assert await s.next_line() == ": keep-alive"


async def test_inline_images_become_files_in_the_scratch_dir(proxy, fake_codex):
    url = data_url(png_header(640, 480))
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": url}}]}]}
    response = await proxy.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    [run] = fake_codex.runs()
    argv = run["argv"]
    scratch = argv[argv.index("-C") + 1]
    assert argv[argv.index("--image") + 1] == os.path.join(scratch, "image-1.png")
    assert argv.index("--image") < argv.index("--")
    assert run["cwd_entries"] == ["image-1.png"]
    assert "[image image-1.png]" in run["stdin"]


async def test_an_idle_connection_outlives_the_clients_own_keep_alive(proxy):
    # httpx (the openai Python SDK) drops an idle connection after 5 s, Node's fetch after 4 s.
    # Were the proxy to drop it first, a request sent just then would fail on a closed
    # connection: the client must be the one to close it.
    host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        request = (f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").encode()

        async def ask() -> bytes:
            await stream.send_all(request)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += await stream.receive_some()
            head, _, body = answer.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += await stream.receive_some()
            return head

        with trio.fail_after(10):
            assert (await ask()).startswith(b"HTTP/1.1 200")
        with trio.move_on_after(6):
            await stream.receive_some()  # b"" as soon as the proxy closes the connection
            pytest.fail("the proxy closed the idle connection")
        with trio.fail_after(10):
            assert (await ask()).startswith(b"HTTP/1.1 200")  # and it still serves on it


