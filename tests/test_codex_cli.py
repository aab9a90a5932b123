"""Unit tests for codex_cli.py (capabilities from `codex exec --help`) and each engine's argv."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from codex_openai_proxy.codex_cli import (
    CAPABILITIES_0_169,
    PINNED_CODEX_VERSION,
    CodexCapabilities,
    parse_exec_help,
    parse_version,
    toml_string,
)
from codex_openai_proxy.engines.app_server import app_server_argv
from codex_openai_proxy.engines.exec import exec_argv

HELP_0_169 = (Path(__file__).parent / "fixtures" / "codex-0.169.0-exec-help.txt").read_text()
SCRATCH = "/tmp/scratch-1"


def options(**changes: Any) -> dict[str, Any]:
    """exec_argv's keyword arguments: the pinned defaults, with `changes`."""
    return {"model": "gpt-5", "reasoning_effort": "high", "login_method": "chatgpt",
            "scratch_dir": SCRATCH, **changes}


# -- argv for codex-cli 0.169.0 ----------------------------------------------------------------


def test_exact_argv_for_the_pinned_version() -> None:
    assert exec_argv("codex", CAPABILITIES_0_169, **options()) == [
        "codex", "exec", "--json", "--skip-git-repo-check", "--ephemeral",
        "--sandbox", "read-only", "-C", SCRATCH, "-m", "gpt-5",
        "-c", 'model_reasoning_effort="high"',
        "-c", 'forced_login_method="chatgpt"',
        "--", "-",
    ]


def test_argv_from_the_parsed_help_matches_the_pinned_capabilities() -> None:
    caps = parse_exec_help(HELP_0_169, "0.169.0", app_server=True)
    assert exec_argv("codex", caps, **options()) == exec_argv("codex", CAPABILITIES_0_169,
                                                             **options())


def test_codex_bin_is_the_first_argument() -> None:
    argv = exec_argv("/opt/bin/codex", CAPABILITIES_0_169, **options())
    assert argv[:2] == ["/opt/bin/codex", "exec"]


@pytest.mark.parametrize(
    "caps",
    [CAPABILITIES_0_169, CodexCapabilities(), CodexCapabilities(exec_flags=frozenset({"--json"}))],
)
def test_argv_never_has_flags_codex_exec_rejects(caps: CodexCapabilities) -> None:
    argv = exec_argv("codex", caps, **options(image_paths=("/tmp/a.png",)))
    for forbidden in ("--ask-for-approval", "-a", "--reasoning", "--full-auto", "--yolo"):
        assert forbidden not in argv
    assert not any(arg.startswith("--reasoning") for arg in argv)
    assert not any(arg.startswith("--dangerously") for arg in argv)


@pytest.mark.parametrize("caps", [CAPABILITIES_0_169, CodexCapabilities()])
def test_argv_always_ends_with_stdin_marker_after_double_dash(caps: CodexCapabilities) -> None:
    argv = exec_argv("codex", caps, **options(image_paths=("/tmp/a.png",)))
    assert argv[-2:] == ["--", "-"]
    assert argv.count("--") == 1
    assert argv.count("-") == 1


def test_model_none_passes_no_model_flag() -> None:
    argv = exec_argv("codex", CAPABILITIES_0_169, **options(model=None))
    assert "-m" not in argv
    assert "--model" not in argv
    assert "gpt-5" not in argv


def test_no_reasoning_effort_passes_no_effort_override() -> None:
    argv = exec_argv("codex", CAPABILITIES_0_169, **options(reasoning_effort=None))
    assert not any("model_reasoning_effort" in arg for arg in argv)
    assert argv[-4:] == ["-c", 'forced_login_method="chatgpt"', "--", "-"]


def test_empty_login_method_passes_nothing() -> None:
    argv = exec_argv("codex", CAPABILITIES_0_169, **options(login_method=""))
    assert not any("forced_login_method" in arg for arg in argv)
    assert argv[-4:] == ["-c", 'model_reasoning_effort="high"', "--", "-"]


def test_no_effort_and_no_login_method_passes_no_config() -> None:
    argv = exec_argv(
        "codex", CAPABILITIES_0_169, **options(reasoning_effort=None, login_method="")
    )
    assert "-c" not in argv
    assert argv[-4:] == ["-m", "gpt-5", "--", "-"]


def test_login_method_other_than_chatgpt() -> None:
    argv = exec_argv("codex", CAPABILITIES_0_169, **options(login_method="api"))
    assert 'forced_login_method="api"' in argv


def test_images_are_passed_before_the_double_dash() -> None:
    paths = ("/tmp/s/image-1.png", "/tmp/s/image-2.jpg")
    argv = exec_argv("codex", CAPABILITIES_0_169, **options(image_paths=paths))
    end = argv.index("--")
    for path in paths:
        at = argv.index(path)
        assert argv[at - 1] == "--image"
        assert at < end
    assert argv.count("--image") == 2
    # Each image is its own `--image PATH`, in the order given.
    assert argv.index(paths[0]) < argv.index(paths[1])
    without_images = [a for a in argv if a not in ("--image", *paths)]
    assert without_images == exec_argv("codex", CAPABILITIES_0_169, **options())


def test_no_images_no_image_flag() -> None:
    assert "--image" not in exec_argv("codex", CAPABILITIES_0_169, **options())


def test_reasoning_effort_value_is_a_toml_string() -> None:
    argv = exec_argv("codex", CAPABILITIES_0_169, **options(reasoning_effort="xhigh"))
    assert 'model_reasoning_effort="xhigh"' in argv


# -- degrading with older or unusual builds ----------------------------------------------------


def test_bare_codex_without_known_flags_gets_the_minimum() -> None:
    argv = exec_argv("codex", CodexCapabilities(), **options(image_paths=("/tmp/a.png",)))
    # -m is short for --model, which every build has; -C, -c, --json etc. are left out.
    assert argv == ["codex", "exec", "--image", "/tmp/a.png", "-m", "gpt-5", "--", "-"]


@pytest.mark.parametrize(
    ("missing", "absent"),
    [
        ("--json", ["--json"]),
        ("--ephemeral", ["--ephemeral"]),
        ("--skip-git-repo-check", ["--skip-git-repo-check"]),
        ("--sandbox", ["--sandbox", "read-only"]),
        ("--cd", ["-C", SCRATCH]),
        ("--config", ["-c", 'model_reasoning_effort="high"', 'forced_login_method="chatgpt"']),
    ],
)
def test_each_missing_flag_is_left_out(missing: str, absent: list[str]) -> None:
    caps = CodexCapabilities("0.1.0", CAPABILITIES_0_169.exec_flags - {missing})
    argv = exec_argv("codex", caps, **options())
    full = exec_argv("codex", CAPABILITIES_0_169, **options())
    for arg in absent:
        assert arg not in argv
    assert [arg for arg in full if arg not in absent] == argv


def test_json_events_follows_the_json_flag() -> None:
    assert CAPABILITIES_0_169.json_events is True
    assert CodexCapabilities().json_events is False
    assert CodexCapabilities(exec_flags=frozenset({"--json"})).json_events is True


def test_has() -> None:
    assert CAPABILITIES_0_169.has("--ephemeral")
    assert not CAPABILITIES_0_169.has("--ask-for-approval")


# -- app-server argv ---------------------------------------------------------------------------


def test_app_server_argv() -> None:
    assert app_server_argv("codex", login_method="chatgpt") == [
        "codex", "app-server", "-c", 'forced_login_method="chatgpt"'
    ]
    assert app_server_argv("codex", login_method="") == ["codex", "app-server"]


def test_app_server_config_overrides_come_before_the_login_method() -> None:
    argv = app_server_argv("codex", login_method="chatgpt",
                           overrides=(("tools.web_search", "false"), ("features.x", "true")))
    assert argv == ["codex", "app-server", "-c", "tools.web_search=false",
                    "-c", "features.x=true", "-c", 'forced_login_method="chatgpt"']


# -- parsing `codex --version` and `codex exec --help` -----------------------------------------


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("codex-cli 0.169.0", "0.169.0"),
        ("codex-cli 0.169.0\n", "0.169.0"),
        ("codex 1.2.3-alpha.4", "1.2.3-alpha.4"),
        ("codex-cli 0.50.0+build.7 (linux)", "0.50.0+build.7"),
        ("version 10.20.30 extra 1.2.3", "10.20.30"),
        ("codex-cli", None),
        ("", None),
        ("codex 1.2", None),
    ],
)
def test_parse_version(text: str, version: str | None) -> None:
    assert parse_version(text) == version


def test_pinned_version_is_what_the_pinned_capabilities_say() -> None:
    assert CAPABILITIES_0_169.version == PINNED_CODEX_VERSION == "0.169.0"
    assert parse_version(f"codex-cli {PINNED_CODEX_VERSION}") == PINNED_CODEX_VERSION


def test_parse_exec_help_of_the_pinned_version() -> None:
    caps = parse_exec_help(HELP_0_169, "0.169.0", app_server=True)
    assert caps.version == "0.169.0"
    assert caps.app_server is True
    assert caps.exec_flags >= CAPABILITIES_0_169.exec_flags
    for flag in ("--json", "--ephemeral", "--skip-git-repo-check", "--config", "--sandbox",
                 "--cd", "--model", "--image", "--output-last-message", "--profile", "--help"):
        assert caps.has(flag), flag


def test_parse_exec_help_records_only_long_flags() -> None:
    caps = parse_exec_help(HELP_0_169, "0.169.0", app_server=False)
    assert caps.app_server is False
    assert all(flag.startswith("--") and len(flag) > 2 for flag in caps.exec_flags)
    for short in ("-c", "-C", "-m", "-i", "-s", "-o", "-h", "-V"):
        assert short not in caps.exec_flags
    # Not flags of 0.169.0's exec:
    assert not caps.has("--ask-for-approval")
    assert not caps.has("--reasoning")


def test_parse_exec_help_of_an_old_build_without_json() -> None:
    old_help = """Usage: codex exec [OPTIONS] [PROMPT]

Options:
  -m, --model <MODEL>        Model the agent should use
  -i, --image <FILE>...      Optional image(s)
  -C, --cd <DIR>             Working root
      --skip-git-repo-check  Allow running outside a Git repository
  -h, --help                 Print help
"""
    caps = parse_exec_help(old_help, "0.1.0", app_server=False)
    assert caps.exec_flags == frozenset(
        {"--model", "--image", "--cd", "--skip-git-repo-check", "--help"}
    )
    assert caps.json_events is False
    assert exec_argv("codex", caps, **options()) == [
        "codex", "exec", "--skip-git-repo-check", "-C", SCRATCH, "-m", "gpt-5", "--", "-",
    ]


def test_parse_exec_help_ignores_dashes_inside_words() -> None:
    caps = parse_exec_help("use foo--bar or x-- or --Upper but --real-flag", None,
                           app_server=False)
    assert caps.exec_flags == frozenset({"--real-flag"})
    assert caps.version is None


def test_parse_empty_help() -> None:
    assert parse_exec_help("", None, app_server=False) == CodexCapabilities()


# -- TOML strings for -c key=value -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("chatgpt", '"chatgpt"'),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\path\\x", '"C:\\\\path\\\\x"'),
        ("two\nlines", '"two\\nlines"'),
        ("tab\there", '"tab\\there"'),
        ("cr\r", '"cr\\r"'),
        ("Zürich", '"Zürich"'),
    ],
)
def test_toml_string_escaping(value: str, expected: str) -> None:
    assert toml_string(value) == expected


@pytest.mark.parametrize(
    "value",
    ["plain", 'q"uote', "back\\slash", "new\nline", "\x00\x01\x1f", "ünï ☃ 🎉", "a'b", "\\n"],
)
def test_toml_string_round_trips_through_a_toml_parser(value: str) -> None:
    rendered = toml_string(value)
    assert tomllib.loads(f"key = {rendered}")["key"] == value
    assert "\n" not in rendered
    assert json.loads(rendered) == value
