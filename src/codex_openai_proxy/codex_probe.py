"""Finding the Codex CLI and asking it, once, what it is and what it accepts."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

import trio

from .codex_cli import INSTALL_HINT, CodexCapabilities, parse_exec_help, parse_version

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class CodexInstall:
    requested: str  # CODEX_BIN as configured
    path: str | None  # resolved executable, None when not found
    capabilities: CodexCapabilities
    problem: str | None = None  # why it cannot be used, for /healthz and the 503

    @property
    def found(self) -> bool:
        return self.path is not None and self.problem is None


def resolve_codex(codex_bin: str, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The executable's path, or None and a message saying where the proxy looked."""
    if os.sep in codex_bin:
        if not os.path.exists(codex_bin):
            return None, f"CODEX_BIN {codex_bin!r} does not exist. {INSTALL_HINT}"
        if not os.access(codex_bin, os.X_OK) or os.path.isdir(codex_bin):
            return None, f"CODEX_BIN {codex_bin!r} is not an executable file. {INSTALL_HINT}"
        return codex_bin, None
    search_path = env.get("PATH", os.defpath)
    found = shutil.which(codex_bin, path=search_path)
    if found is None:
        return None, (
            f"The Codex CLI {codex_bin!r} was not found on PATH ({search_path}). {INSTALL_HINT}"
        )
    return found, None


async def _output(argv: list[str], env: Mapping[str, str]) -> tuple[int, str]:
    with trio.fail_after(PROBE_TIMEOUT_S):
        result = await trio.run_process(
            argv, capture_stdout=True, capture_stderr=True, check=False,
            stdin=subprocess.DEVNULL, env=dict(env),
        )
    text = result.stdout.decode("utf-8", "replace") + result.stderr.decode("utf-8", "replace")
    return result.returncode, text


async def probe_codex(codex_bin: str, env: Mapping[str, str]) -> CodexInstall:
    path, problem = resolve_codex(codex_bin, env)
    if path is None:
        return CodexInstall(codex_bin, None, CodexCapabilities(), problem)
    try:
        _, version_text = await _output([path, "--version"], env)
        help_status, help_text = await _output([path, "exec", "--help"], env)
        app_status, _ = await _output([path, "app-server", "--help"], env)
    except (OSError, trio.TooSlowError) as error:
        return CodexInstall(codex_bin, None, CodexCapabilities(),
                            f"Could not run {path!r}: {error}. {INSTALL_HINT}")
    if help_status != 0:
        return CodexInstall(codex_bin, None, CodexCapabilities(),
                            f"{path!r} does not look like the Codex CLI: `exec --help` failed: "
                            f"{help_text.strip()[:300]}. {INSTALL_HINT}")
    capabilities = parse_exec_help(help_text, parse_version(version_text),
                                   app_server=app_status == 0)
    return CodexInstall(codex_bin, path, capabilities)
