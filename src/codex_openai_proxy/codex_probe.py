"""Finding the Codex CLI and asking it, once, what it is and what it accepts."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from .catalog import CatalogError, load_catalog_json
from .child import Completed, Sentinel, run_child
from .codex_cli import INSTALL_HINT, CodexCapabilities, parse_exec_help, parse_version

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 20.0
#: A probe past its timeout gets SIGINT, then SIGKILL to its whole group after this long.
PROBE_KILL_GRACE_S = 1.0
#: `codex debug models` refreshes the catalog online first; offline it falls back by itself,
#: but a network that hangs must not hold up the start for long: then the bundled catalog.
CATALOG_REFRESH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CodexInstall:
    path: str | None  # the executable the proxy runs, None when not found
    capabilities: CodexCapabilities
    problem: str | None = None  # why it cannot be used, for /healthz and the 503
    #: What the npm package's Node wrapper would have set for its native binary, when the
    #: proxy runs that binary itself (see `native_binary`).
    env: Mapping[str, str] = field(default_factory=dict)

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


#: The npm platform package and Rust target of the native binary, by `platform.machine()`
#: (as the npm package's bin/codex.js chooses them on Linux).
NATIVE_TARGETS = {
    "x86_64": ("codex-linux-x64", "x86_64-unknown-linux-musl"),
    "aarch64": ("codex-linux-arm64", "aarch64-unknown-linux-musl"),
    "arm64": ("codex-linux-arm64", "aarch64-unknown-linux-musl"),
}


def native_binary(path: str) -> tuple[str, dict[str, str]] | None:
    """The native Codex binary behind the npm package's Node wrapper, and the environment the
    wrapper would give it; None if `path` is not that wrapper or the binary is not there.

    The wrapper (`@openai/codex/bin/codex.js`) only finds and starts the binary, but it costs
    a Node process per run: ~120 ms of CPU and ~130 ms before Codex even starts (measured
    with codex-cli 0.169.0 on Node 20, where Node stays alive as the binary's parent).
    """
    script = Path(path).resolve()
    if script.name != "codex.js" or script.parent.name != "bin":
        return None
    package_root = script.parent.parent
    target = NATIVE_TARGETS.get(platform.machine())
    if target is None or sys.platform != "linux":
        return None
    package, triple = target
    # Where bin/codex.js looks (Node's require.resolve of the platform package from the
    # package's own folder): its node_modules, then beside it in the @openai scope, then its
    # own vendor folder.
    for vendor in (package_root / "node_modules" / "@openai" / package / "vendor",
                   package_root.parent / package / "vendor",
                   package_root / "vendor"):
        binary = vendor / triple / "bin" / "codex"
        if os.access(binary, os.X_OK):
            return str(binary), {"CODEX_MANAGED_BY_NPM": "1",
                                 "CODEX_MANAGED_PACKAGE_ROOT": str(package_root)}
    return None


async def _run(argv: list[str], env: Mapping[str, str], timeout: float | None = None,
               sentinel: Sentinel | None = None) -> Completed:
    # A probe is a child like any other (`child.py`): its own process group, stopped whole
    # when it takes too long, so a timeout leaves no native binary of the npm wrapper behind.
    return await run_child(argv, env=env, timeout_s=PROBE_TIMEOUT_S if timeout is None
                           else timeout, kill_grace_s=PROBE_KILL_GRACE_S, sentinel=sentinel)


async def _output(argv: list[str], env: Mapping[str, str],
                  sentinel: Sentinel | None) -> tuple[int, str]:
    result = await _run(argv, env, sentinel=sentinel)
    return result.returncode, result.stdout.decode("utf-8", "replace") + result.stderr_tail


async def probe_codex(codex_bin: str, env: Mapping[str, str],
                      sentinel: Sentinel | None = None) -> CodexInstall:
    path, problem = resolve_codex(codex_bin, env)
    if path is None:
        return CodexInstall(None, CodexCapabilities(), problem)
    extra_env: Mapping[str, str] = {}
    if (native := native_binary(path)) is not None:
        path, extra_env = native
        env = {**env, **extra_env}
    try:
        _, version_text = await _output([path, "--version"], env, sentinel)
        help_status, help_text = await _output([path, "exec", "--help"], env, sentinel)
        app_status, _ = await _output([path, "app-server", "--help"], env, sentinel)
    except (OSError, trio.TooSlowError) as error:
        return CodexInstall(None, CodexCapabilities(),
                            f"Could not run {path!r}: {error}. {INSTALL_HINT}")
    if help_status != 0:
        return CodexInstall(None, CodexCapabilities(),
                            f"{path!r} does not look like the Codex CLI: `exec --help` failed: "
                            f"{help_text.strip()[:300]}. {INSTALL_HINT}")
    capabilities = parse_exec_help(help_text, parse_version(version_text),
                                   app_server=app_status == 0)
    return CodexInstall(path, capabilities, env=extra_env)


async def read_catalog(path: str, env: Mapping[str, str],
                       sentinel: Sentinel | None = None) -> dict[str, Any]:
    """Codex's model catalog, as `codex debug models` prints it; raises CatalogError saying
    why it cannot be had."""
    attempts = [([path, "debug", "models"], CATALOG_REFRESH_TIMEOUT_S),
                ([path, "debug", "models", "--bundled"], PROBE_TIMEOUT_S)]
    problem = "no attempt made"
    for argv, timeout in attempts:
        try:
            result = await _run(argv, env, timeout, sentinel)
        except trio.TooSlowError:
            problem = f"`{' '.join(argv[1:])}` took longer than {timeout:g} s"
            continue
        except OSError as error:
            raise CatalogError(f"could not run {path!r}: {error}") from None
        if result.returncode != 0:
            detail = result.stderr_tail.strip().splitlines()
            problem = (f"`{' '.join(argv[1:])}` exited with status {result.returncode}"
                       + (f": {detail[-1]}" if detail else ""))
            continue
        return load_catalog_json(result.stdout.decode("utf-8", "replace"))
    raise CatalogError(problem)
