"""The benchmark scripts are run by hand, seldom: they must at least still import the package
as it is now and parse their options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.parametrize("script", ["bench.py", "bench_codex.py"])
def test_the_benchmark_starts(script):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")
