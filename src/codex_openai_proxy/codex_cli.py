"""What the installed Codex CLI accepts, and the pieces of its command lines (pure).

The proxy asks `codex --version` and `codex exec --help` once at start-up; each engine builds
its argv from what that build says it accepts, so an older or newer Codex degrades (plain
output instead of `--json`, no `--ephemeral`) instead of failing with "unexpected argument".
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

#: The Codex CLI version the proxy is tested against.
PINNED_CODEX_VERSION = "0.169.0"

INSTALL_HINT = "Install it with `npm i -g @openai/codex` or set CODEX_BIN to its path."


@dataclass(frozen=True)
class CodexCapabilities:
    """Flags of `codex exec` this build accepts (from its --help) and its version."""

    version: str | None = None
    exec_flags: frozenset[str] = field(default_factory=frozenset)
    app_server: bool = False

    def has(self, flag: str) -> bool:
        return flag in self.exec_flags

    @property
    def json_events(self) -> bool:
        return self.has("--json")


#: What codex-cli 0.169.0 reports; the tests' stand-ins and the docs use it.
CAPABILITIES_0_169 = CodexCapabilities(
    version=PINNED_CODEX_VERSION,
    exec_flags=frozenset({"--json", "--ephemeral", "--skip-git-repo-check", "--config",
                          "--sandbox", "--cd", "--model", "--image"}),
    app_server=True,
)


def parse_version(text: str) -> str | None:
    """`codex-cli 0.169.0` -> `0.169.0`."""
    match = re.search(r"(\d+\.\d+\.\d+(?:[-+][\w.]+)?)", text)
    return match.group(1) if match else None


def parse_exec_help(help_text: str, version: str | None, *, app_server: bool) -> CodexCapabilities:
    """Read the long flags from `codex exec --help`; short ones are recorded as their long name."""
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text))
    return CodexCapabilities(version, frozenset(flags), app_server)


def toml_string(value: str) -> str:
    """A TOML basic string for `-c key=value`.

    JSON's escapes are a subset of TOML's, except that TOML also forbids a raw DEL (U+007F),
    which JSON leaves as it is.
    """
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def config_args(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """`-c key=value` for each (key, TOML value) pair."""
    return [arg for key, value in pairs for arg in ("-c", f"{key}={value}")]


def login_overrides(login_method: str) -> list[tuple[str, str]]:
    """`forced_login_method`, unless the setting is empty."""
    return [("forced_login_method", toml_string(login_method))] if login_method else []
