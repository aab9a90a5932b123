#!/usr/bin/env python3
"""How many bytes the model is sent per request, and how many of them Codex added.

    .venv/bin/python scripts/upstream_bytes.py                 # this checkout
    .venv/bin/python scripts/upstream_bytes.py --src OTHER/src # another version of the proxy

The proxy (`python -m codex_openai_proxy`, from `--src`) runs the pinned Codex CLI against
tests/mock_responses.py, whose recorded request body is what the model would be sent. Two
requests per model: a plain "Say hi", and one turn of a Roo Code task (its ~30 KB system
prompt, its 13 tools, a tool call and its result in the history). "Direct" is what a client
calling the Responses API itself would send for the same conversation (the model, the system
prompt as a developer message, the conversation as items, the tools as function tools);
"Codex-added" is the difference. Sizes are compact JSON, as Codex sends it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from test_tool_calls import ROO_TOOLS, roo_turn  # noqa: E402

from codex_openai_proxy.chat_request import parse_chat_request  # noqa: E402
from codex_openai_proxy.native_history import native_conversation  # noqa: E402

from conftest import listening_url  # noqa: E402
from mock_responses import MockResponses, codex_home, serve_mock  # noqa: E402

MODELS = ("gpt-6.1-sol", "gpt-5.5", "gpt-5")
API_KEY = "bytes-key"


def requests_for(model: str) -> dict[str, dict[str, Any]]:
    return {
        "plain": {"model": model, "messages": [{"role": "user", "content": "Say hi"}]},
        "Roo turn": {"model": model, "tools": ROO_TOOLS, "messages": roo_turn()},
    }


def compact(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def direct_bytes(body: dict[str, Any]) -> int:
    """The Responses request a client would send itself for the same conversation."""
    request = parse_chat_request(body, default_model="gpt-5")
    conversation = native_conversation(request.messages)
    items = list(conversation.items)
    if conversation.instructions:
        items.insert(0, {"type": "message", "role": "developer", "content": [
            {"type": "input_text", "text": conversation.instructions}]})
    direct: dict[str, Any] = {"model": request.model, "input": items, "stream": True}
    if request.tools:
        direct["tools"] = [{"type": "function", "name": tool.name,
                            "description": tool.description, "parameters": tool.parameters,
                            "strict": tool.strict} for tool in request.tools]
    return compact(direct)


async def measure(src: Path, codex_bin: str) -> list[tuple[str, str, int, int]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="upstream-bytes-") as root:
        async with trio.open_nursery() as nursery:
            mock = MockResponses()
            await nursery.start(serve_mock, mock)
            home = codex_home(Path(root) / "codex-home", mock.url)
            env = {**os.environ, "PYTHONPATH": str(src), "CODEX_BIN": codex_bin,
                   "CODEX_HOME": str(home), "HOME": root, "PORT": "0",
                   "PROXY_API_KEY": API_KEY, "CODEX_LOGIN_METHOD": ""}
            proxy = await trio.lowlevel.open_process(
                [sys.executable, "-m", "codex_openai_proxy"], env=env,
                stderr=subprocess.PIPE, start_new_session=True)
            try:
                url = await listening_url(proxy)
                async with httpx.AsyncClient(base_url=url, timeout=60,
                                             headers={"Authorization": f"Bearer {API_KEY}"}
                                             ) as client:
                    for model in MODELS:
                        for name, body in requests_for(model).items():
                            before = len(mock.requests)
                            response = await client.post("/v1/chat/completions", json=body)
                            response.raise_for_status()
                            upstream = mock.requests[before].body
                            rows.append((model, name, compact(upstream), direct_bytes(body)))
            finally:
                proxy.terminate()
                await proxy.wait()
            nursery.cancel_scope.cancel()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=REPO / "src",
                        help="the proxy's package directory to measure (default: this one)")
    parser.add_argument("--codex-bin", default=str(
        REPO / ".tools" / "codex" / "node_modules" / ".bin" / "codex"))
    args = parser.parse_args()
    rows = trio.run(measure, args.src.resolve(), args.codex_bin)
    print("| model | request | upstream bytes | direct bytes | Codex-added bytes |")
    print("|---|---|---:|---:|---:|")
    for model, name, upstream, direct in rows:
        print(f"| {model} | {name} | {upstream:,} | {direct:,} | {upstream - direct:,} |")


if __name__ == "__main__":
    main()
