#!/usr/bin/env python3
"""A stand-in for codex-cli 0.169.0, for tests that need Codex to misbehave on cue.

Faithful to what the proxy relies on from the real CLI: `--version`, `exec --help` (the real
0.169.0 text), `app-server --help`, `debug models` (the real catalog), `login status` (exit
status 1 and "Not logged in" on stderr without credentials), and `codex exec`'s argv rules
(clap's "unexpected argument" error and exit status 2 for flags exec does not take, such as
`--ask-for-approval` and `--reasoning`; `-` or no prompt reads stdin to EOF). `exec --json`
prints the same JSONL event shapes 0.169.0 prints; without `--json` it prints only the final
message, as plain mode does.

The scenario comes from the environment, so one executable serves every test:

  FAKE_CODEX_SCENARIO   normal (default), two_messages, operational, slow, drip, hang,
                        ignore_signals, grandchild, auth_failure, turn_failed, crash,
                        malformed, noisy, long, exit_early, config_error (what 0.169.0 says
                        of a config.toml it cannot load: paths, the offending line with its
                        bearer token, CONFIG_SECRET, on stderr)
                        (a prompt containing `fake-scenario:NAME` picks NAME instead)
  FAKE_CODEX_ANSWER     the agent message (default: "Hello from fake Codex.")
  FAKE_CODEX_DELAY_S    seconds `slow` waits before answering (default 1)
  FAKE_CODEX_LONG_BYTES size of the `long` answer (default 1 MiB)
  FAKE_CODEX_DRIP_COUNT, FAKE_CODEX_DRIP_MS
                        `drip`: how many messages, how far apart (default 20, 50 ms); each
                        is `[index@monotonic_ns]`, stamped when written
  FAKE_CODEX_CATALOG    the JSON file `debug models` prints (default: the real 0.169.0
                        catalog, trimmed), or `fail` to make it fail
  FAKE_CODEX_LOGIN      `none`: `login status` says "Not logged in" (default: logged in)
  FAKE_CODEX_RECORD_DIR where each run records `<pid>.json` (argv, stdin, cwd, env) and the
                        pids it started (`<pid>.pids`), for the tests to check
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

VERSION = "codex-cli 0.169.0"
HELP_FILE = Path(__file__).resolve().with_name("fixtures") / "codex-0.169.0-exec-help.txt"
CATALOG_FILE = Path(__file__).resolve().with_name("fixtures") / "codex-0.169.0-models.json"

# exec's options that take a value, and the flags that do not (from the 0.169.0 help).
VALUE_OPTIONS = {
    "-c", "--config", "--enable", "--disable", "-i", "--image", "-m", "--model",
    "--local-provider", "-p", "--profile", "-s", "--sandbox", "-C", "--cd", "--add-dir",
    "--thread-source", "--cyber-access-program", "--output-schema", "--color",
    "-o", "--output-last-message",
}
FLAGS = {
    "--strict-config", "--oss", "--approve-for-me", "--dangerously-bypass-approvals-and-sandbox",
    "--dangerously-bypass-hook-trust", "--worktree", "--skip-git-repo-check", "--trust",
    "--ephemeral", "--ignore-user-config", "--ignore-rules", "--json",
}
USAGE = "Usage: codex exec [OPTIONS] [PROMPT]\n       codex exec [OPTIONS] <COMMAND> [ARGS]"

#: The bearer token of the broken config.toml that `config_error` quotes, as 0.169.0 does.
CONFIG_SECRET = "sk-proj-FAKE0123456789abcdefSECRET"
CONFIG_PATH = "/home/someone/.codex/config.toml"
CONFIG_ERROR = (
    "WARNING: proceeding, even though we could not create PATH aliases: Refusing to create "
    'helper binaries under temporary dir "/tmp" (codex_home: AbsolutePathBuf('
    '"/home/someone/.codex"))\n'
    f'Error loading config.toml:\n{CONFIG_PATH}:5:16: invalid type: string "Bearer '
    f'{CONFIG_SECRET}", expected a map\n'
    "  |\n"
    f'5 | http_headers = "Bearer {CONFIG_SECRET}"\n'
    "  |                ^\n"
)

USAGE_TOTALS = {"input_tokens": 120, "cached_input_tokens": 20, "cache_write_input_tokens": 0,
                "output_tokens": 30, "reasoning_output_tokens": 10}


def clap_error(argument: str) -> None:
    sys.stderr.write(
        f"error: unexpected argument '{argument}' found\n\n"
        f"  tip: to pass '{argument}' as a value, use '-- {argument}'\n\n"
        f"{USAGE}\n\nFor more information, try '--help'.\n"
    )
    sys.exit(2)


def parse_exec(args: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    options: dict[str, list[str]] = {}
    positional: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            positional += args[index + 1:]
            break
        if arg in ("-h", "--help"):
            sys.stdout.write(HELP_FILE.read_text())
            sys.exit(0)
        if arg.startswith("--") and "=" in arg:
            arg, value = arg.split("=", 1)
            if arg not in VALUE_OPTIONS:
                clap_error(arg)
            options.setdefault(arg, []).append(value)
        elif arg in VALUE_OPTIONS:
            if index + 1 >= len(args):
                sys.stderr.write(f"error: a value is required for '{arg}' but none was supplied\n")
                sys.exit(2)
            index += 1
            options.setdefault(arg, []).append(args[index])
            # `--image <FILE>...` keeps taking values until the next option or `--`.
            while arg in ("-i", "--image") and index + 1 < len(args) \
                    and not args[index + 1].startswith("-"):
                index += 1
                options[arg].append(args[index])
        elif arg in FLAGS:
            options.setdefault(arg, [])
        elif arg.startswith("-") and arg != "-":
            clap_error(arg)
        else:
            positional.append(arg)
        index += 1
    if len(positional) > 1:
        clap_error(positional[1])
    return options, positional


def parse_app_server(args: list[str]) -> list[str]:
    """`codex app-server`'s options (0.169.0): `-c key=value`, `--enable`/`--disable FEATURE`;
    anything else is clap's "unexpected argument". The `-c` values, for the record."""
    configs: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in ("-c", "--config", "--enable", "--disable"):
            if index + 1 >= len(args):
                sys.stderr.write(f"error: a value is required for '{arg}' but none was supplied\n")
                sys.exit(2)
            configs.append(f"{arg} {args[index + 1]}")
            index += 2
        elif arg in ("--stdio", "--strict-config"):
            index += 1
        else:
            sys.stderr.write(f"error: unexpected argument '{arg}' found\n\n"
                             "Usage: codex app-server [OPTIONS] [COMMAND]\n\n"
                             "For more information, try '--help'.\n")
            sys.exit(2)
    return configs


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def record(record_dir: str | None, name: str, payload: str) -> None:
    if record_dir:
        path = Path(record_dir) / name
        with path.open("a") as file:
            file.write(payload)


def main() -> None:
    args = sys.argv[1:]
    if args[:1] in (["--version"], ["-V"]):
        print(VERSION)
        return
    if args[:2] == ["login", "status"]:
        if os.environ.get("FAKE_CODEX_LOGIN") == "none":
            sys.stderr.write("Not logged in\n")
            sys.exit(1)
        sys.stderr.write("Logged in using ChatGPT\n")
        return
    if args[:2] == ["debug", "models"]:
        # The real 0.169.0 catalog (trimmed to the fields the proxy reads), or another one.
        catalog = os.environ.get("FAKE_CODEX_CATALOG", str(CATALOG_FILE))
        if catalog == "fail":
            sys.stderr.write("Error: failed to load the model catalog\n")
            sys.exit(1)
        sys.stdout.write(Path(catalog).read_text())
        return
    if args[:1] == ["app-server"]:
        if "--help" in args or "-h" in args:
            print("[experimental] Run the app server or related tooling")
            return
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from fake_app_server import serve  # beside this file (resolved: it may be linked)

        serve(parse_app_server(args[1:]))
        return
    if args[:1] != ["exec"]:
        sys.stderr.write(f"fake_codex: only exec is simulated, got {args!r}\n")
        sys.exit(2)

    options, positional = parse_exec(args[1:])
    prompt = positional[0] if positional else "-"
    if prompt == "-":
        prompt = sys.stdin.read()

    # A prompt may pick its own scenario, for tests that mix behaviours on one server.
    directive = re.search(r"fake-scenario:(\w+)", prompt)
    scenario = directive.group(1) if directive else os.environ.get("FAKE_CODEX_SCENARIO",
                                                                     "normal")
    record_dir = os.environ.get("FAKE_CODEX_RECORD_DIR")
    pid = os.getpid()
    record(record_dir, f"{pid}.pids", f"{pid}\n")
    record(record_dir, f"{pid}.json", json.dumps({
        "argv": sys.argv[1:], "stdin": prompt, "cwd": os.getcwd(),
        "cwd_entries": sorted(os.listdir(".")),
        "has_proxy_api_key": "PROXY_API_KEY" in os.environ,
        "pgid": os.getpgid(0), "sid": os.getsid(0),
    }))

    json_mode = "--json" in options
    answer = os.environ.get("FAKE_CODEX_ANSWER", "Hello from fake Codex.")
    run(scenario, json_mode, answer, record_dir, pid)


def run(scenario: str, json_mode: bool, answer: str, record_dir: str | None, pid: int) -> None:
    def event(payload: dict) -> None:
        if json_mode:
            emit(payload)

    def message(item_id: str, text: str) -> None:
        event({"type": "item.started", "item": {"id": item_id, "type": "agent_message",
                                                 "text": ""}})
        event({"type": "item.completed", "item": {"id": item_id, "type": "agent_message",
                                                   "text": text}})

    def finish(text: str) -> None:
        if json_mode:
            event({"type": "turn.completed", "usage": USAGE_TOTALS})
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def hang() -> None:
        # Tell the test, through the stream it reads, that everything is in place.
        event({"type": "item.completed", "item": {"id": "item_r", "type": "reasoning",
                                                   "text": "ready"}})
        while True:
            time.sleep(3600)

    if scenario == "config_error":
        sys.stderr.write(CONFIG_ERROR)
        sys.exit(1)
    sys.stderr.write("Reading prompt from stdin...\n")
    event({"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"})
    # 0.169.0 reports models missing from its catalog as an error *item*, and carries on.
    event({"type": "item.completed", "item": {"id": "item_0", "type": "error",
                                               "message": "Model metadata for `gpt-5` not found."}})
    event({"type": "turn.started"})

    if scenario == "normal":
        event({"type": "item.completed", "item": {"id": "item_1", "type": "reasoning",
                                                   "text": "**Thinking** about it"}})
        message("item_2", answer)
        finish(answer)
    elif scenario == "two_messages":
        message("item_1", "First message.")
        message("item_2", answer)
        finish(answer)
    elif scenario == "operational":
        emit_ops(event)
        message("item_9", answer)
        finish(answer)
    elif scenario == "slow":
        time.sleep(float(os.environ.get("FAKE_CODEX_DELAY_S", "1")))
        message("item_1", answer)
        finish(answer)
    elif scenario == "drip":
        # A long answer in many messages, each stamped with the monotonic clock (system-wide
        # on Linux) when it was written, so a reader can measure the relay's latency.
        count = int(os.environ.get("FAKE_CODEX_DRIP_COUNT", "20"))
        gap = float(os.environ.get("FAKE_CODEX_DRIP_MS", "50")) / 1000
        for index in range(count):
            if index:
                time.sleep(gap)
            message(f"drip_{index}", f"[{index}@{time.monotonic_ns()}]")
        finish("drip")
    elif scenario == "hang":
        hang()
    elif scenario == "ignore_signals":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        hang()
    elif scenario == "grandchild":
        # Like the npm wrapper: a child of our own, in our process group, that outlives us
        # unless the whole group is killed.
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        record(record_dir, f"{pid}.pids", f"{grandchild.pid}\n")
        hang()
    elif scenario == "auth_failure":
        text = ("unexpected status 401 Unauthorized: Missing bearer or basic authentication in "
                "header, url: https://api.openai.com/v1/responses")
        event({"type": "error", "message": text})
        event({"type": "turn.failed", "error": {"message": text}})
        sys.exit(1)
    elif scenario == "turn_failed":
        text = ("We're currently experiencing high demand, which may cause temporary errors.")
        event({"type": "error", "message": "Reconnecting... 1/5"})
        event({"type": "turn.failed", "error": {"message": text}})
        sys.exit(1)
    elif scenario == "crash":
        sys.stderr.write("thread 'main' panicked at codex-rs/exec/src/lib.rs:42:5:\n"
                         "fake crash for the tests\n")
        sys.exit(101)
    elif scenario == "exit_early":
        sys.exit(0)
    elif scenario == "malformed":
        sys.stdout.write("this is not json\n{\"broken\": \n")
        sys.stdout.flush()
        sys.exit(0)
    elif scenario == "noisy":
        sys.stdout.write("stray debug line\n")
        message("item_1", answer)
        sys.stdout.write("[1, 2, 3]\n")
        finish(answer)
    elif scenario == "long":
        size = int(os.environ.get("FAKE_CODEX_LONG_BYTES", str(1024 * 1024)))
        text = ("0123456789abcdef" * (size // 16 + 1))[:size]
        message("item_1", text)
        finish(text)
    else:
        sys.stderr.write(f"fake_codex: unknown scenario {scenario!r}\n")
        sys.exit(2)


def emit_ops(event) -> None:
    """Everything 0.169.0 reports besides messages; none of it may reach the client."""
    event({"type": "error", "message": "Reconnecting... 1/5 (stream disconnected)"})
    event({"type": "item.started", "item": {"id": "item_1", "type": "command_execution",
                                             "command": "ls -la", "aggregated_output": "",
                                             "exit_code": None, "status": "in_progress"}})
    event({"type": "item.completed", "item": {"id": "item_1", "type": "command_execution",
                                               "command": "ls -la", "aggregated_output": "SECRET",
                                               "exit_code": 0, "status": "completed"}})
    event({"type": "item.completed", "item": {"id": "item_2", "type": "file_change",
                                               "changes": [{"path": "a.txt", "kind": "add"}],
                                               "status": "completed"}})
    event({"type": "item.completed", "item": {"id": "item_3", "type": "mcp_tool_call",
                                               "server": "s", "tool": "t", "status": "completed"}})
    event({"type": "item.completed", "item": {"id": "item_4", "type": "web_search",
                                               "query": "weather"}})
    event({"type": "item.updated", "item": {"id": "item_5", "type": "todo_list",
                                             "items": [{"text": "plan", "completed": False}]}})


if __name__ == "__main__":
    main()
