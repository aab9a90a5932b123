"""What the installed Codex CLI accepts, and the argv for a run (pure).

The proxy asks `codex --version` and `codex exec --help` once at start-up and builds every argv
from what that build says it accepts, so an older or newer Codex degrades (plain output instead
of `--json`, no `--ephemeral`) instead of failing with "unexpected argument".
Never built here: approval or reasoning flags, which `codex exec` 0.169.0 rejects as unexpected
arguments (exec always runs with approval `never`; effort is `-c model_reasoning_effort=...`).
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


@dataclass(frozen=True)
class RunOptions:
    """What one run needs from the request and the settings, for any engine."""

    model: str | None  # None: let Codex's own config choose
    reasoning_effort: str | None
    login_method: str  # "" passes nothing
    scratch_dir: str
    image_paths: Sequence[str] = ()
    config_overrides: Sequence[tuple[str, str]] = ()  # (key, TOML value), e.g. tool switches


#: `-c` overrides for requests that bring tools of their own (Roo Code and other agents): the
#: client is the agent, so the model must choose among the client's tools only, or it would
#: run shell commands, search the web or spawn agents where the client expects a call that it
#: executes itself; and Codex's notes on its sandbox, its skills and its working directory
#: (an empty scratch folder) would only mislead it.
#: Checked on codex-cli 0.169.0 against the mock upstream with `-m gpt-5`: without them the
#: model is offered exec_command, write_stdin, request_user_input, view_image, multi_agent_v1,
#: get_goal, create_goal, update_goal and web_search beside the client's tools, and given the
#: skills, permissions and environment context; with them, the client's tools and messages
#: alone. (Models whose catalog entry selects Codex's JavaScript "code mode" still get Codex's
#: `exec`/`wait` wrapper and its collaboration tools; see the README.)
CLIENT_TOOLS_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("features.shell_tool", "false"),
    ("features.unified_exec", "false"),
    ("web_search", '"disabled"'),
    ("features.multi_agent", "false"),
    ("features.multi_agent_v2", "false"),
    ("features.goals", "false"),
    ("features.view_image", "false"),
    ("features.sleep_tool", "false"),
    ("tools.experimental_request_user_input.enabled", "false"),
    ("include_permissions_instructions", "false"),
    ("include_environment_context", "false"),
    ("skills.include_instructions", "false"),
)


def _config_args(options: RunOptions) -> list[str]:
    pairs = list(options.config_overrides)
    if options.login_method:
        pairs.append(("forced_login_method", toml_string(options.login_method)))
    return [arg for key, value in pairs for arg in ("-c", f"{key}={value}")]


def exec_argv(codex_bin: str, caps: CodexCapabilities, options: RunOptions) -> list[str]:
    """`codex exec ... -`: the prompt always goes on stdin, so no message is ever read as a flag
    and no prompt size runs into the argv limit."""
    argv = [codex_bin, "exec"]
    if caps.json_events:
        argv.append("--json")
    for path in options.image_paths:
        argv += ["--image", path]
    if caps.has("--skip-git-repo-check"):
        argv.append("--skip-git-repo-check")
    if caps.has("--ephemeral"):
        argv.append("--ephemeral")
    if caps.has("--sandbox"):
        argv += ["--sandbox", "read-only"]
    if caps.has("--cd"):
        argv += ["-C", options.scratch_dir]
    if options.model is not None:
        argv += ["-m", options.model]
    if caps.has("--config"):
        if options.reasoning_effort is not None:
            argv += ["-c", f"model_reasoning_effort={toml_string(options.reasoning_effort)}"]
        argv += _config_args(options)
    # `--image` takes several values: `--` ends the options so that the final `-` (read the
    # prompt from stdin) can never be taken for one more image.
    argv += ["--", "-"]
    return argv


def app_server_argv(codex_bin: str, options: RunOptions) -> list[str]:
    """`codex app-server` over stdio; model, effort and tools travel in the JSON-RPC calls."""
    return [codex_bin, "app-server", *_config_args(options)]
