"""The benchmark scripts are run by hand, seldom: they must at least still import the package
as it is now and parse their options."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from test_tool_calls import ROO_SYSTEM_PROMPT

from conftest import REPO


@pytest.mark.parametrize("script", ["bench.py", "bench_codex.py", "upstream_bytes.py"])
def test_the_benchmark_starts(script):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")


def test_upstream_bytes_sizes_the_request_a_client_would_send_itself():
    # Its "direct" column parses each request as the proxy does: it must keep up with the
    # parser (it once called it with an option the parser no longer had).
    spec = importlib.util.spec_from_file_location("upstream_bytes",
                                                  REPO / "scripts" / "upstream_bytes.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    sizes = {name: script.direct_bytes(body)
             for name, body in script.requests_for("gpt-5").items()}
    assert 0 < sizes["plain"] < 200
    assert sizes["Roo turn"] > len(ROO_SYSTEM_PROMPT)
