#!/usr/bin/env python3
"""Time to first content byte through the proxy, per engine, with the real Codex CLI.

The model is the local mock of the Responses API (tests/mock_responses.py), writing an answer
of `--deltas` pieces `--gap-ms` apart, so the figures show what the engine adds and how early
the first words reach the client, not network or model latency.

    .venv/bin/python scripts/bench_ttfb.py [--runs 10] [--deltas 20] [--gap-ms 50]

Needs the pinned Codex that `bash scripts/test.sh` installs into .tools/codex.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import httpx
import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from codex_openai_proxy.server import serve_proxy  # noqa: E402
from codex_openai_proxy.settings import Settings  # noqa: E402

from mock_responses import MockResponses, codex_home, serve_mock  # noqa: E402

CODEX = os.environ.get("CODEX_OPENAI_PROXY_TEST_CODEX") or str(
    REPO / ".tools" / "codex" / "node_modules" / ".bin" / "codex")


async def one_request(client: httpx.AsyncClient) -> tuple[float, float]:
    """(seconds to the first content chunk, seconds to the end of the stream)."""
    body = {"model": "gpt-5", "stream": True,
            "messages": [{"role": "user", "content": "Write a paragraph."}]}
    started = time.perf_counter()
    first = None
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if first is None and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter() - started
    return first or float("nan"), time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    answer = tuple(f"word{i} " for i in range(args.deltas))
    rows = []
    async with trio.open_nursery() as nursery:
        mock = MockResponses(answer=answer, delta_delay_s=args.gap_ms / 1000)
        await nursery.start(serve_mock, mock)
        home = codex_home(Path(tempfile.mkdtemp(prefix="bench-codex-home-")), mock.url)
        env = {"PATH": os.environ["PATH"], "HOME": str(home.parent), "CODEX_HOME": str(home)}
        generation_ms = (args.deltas - 1) * args.gap_ms
        for engine in ("exec", "app-server"):
            settings = replace(Settings(), port=0, codex_bin=CODEX, engine=engine)
            server = await nursery.start(partial(serve_proxy, settings, env=env,
                                                 handle_signals=False))
            async with httpx.AsyncClient(
                base_url=server.url, timeout=60,
                headers={"Authorization": f"Bearer {settings.api_key}"},
            ) as client:
                await one_request(client)  # warm the page cache
                firsts, totals = [], []
                for _ in range(args.runs):
                    first, total = await one_request(client)
                    firsts.append(first * 1000)
                    totals.append(total * 1000)
            server.shut_down()
            rows.append((engine, statistics.median(firsts), min(firsts), max(firsts),
                         statistics.median(totals)))
        nursery.cancel_scope.cancel()

    print(f"Codex {CODEX}\nmodel writes {args.deltas} deltas {args.gap_ms} ms apart "
          f"({generation_ms} ms from first to last); {args.runs} runs per engine\n")
    print("| engine | first content p50 | min | max | whole answer p50 |")
    print("|---|---|---|---|---|")
    for engine, p50, low, high, total in rows:
        print(f"| {engine} | {p50:.0f} ms | {low:.0f} ms | {high:.0f} ms | {total:.0f} ms |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--deltas", type=int, default=20)
    parser.add_argument("--gap-ms", type=int, default=50)
    trio.run(main, parser.parse_args())
