#!/usr/bin/env python3
"""A stand-in for `systemctl --user`, for testing scripts/install.sh where no systemd user
session can run (containers, CI).

It does what the user manager would do with our unit, for the commands install.sh uses:
`show-environment` (fails as the real one does without a session bus when
FAKE_SYSTEMD=absent), `daemon-reload`, `enable`, `restart`, `disable --now`. `restart` starts
the unit's `ExecStart` the way systemd does: in its own session, with `%h` expanded, the
`EnvironmentFile` read in systemd's syntax and the manager's small environment (HOME and a
default PATH, not the caller's), and output to a journal file. Stopping sends the unit's
KillSignal (SIGTERM) to the main process only, as `KillMode=mixed` does, waits for it to exit,
then SIGKILLs what is left in its process group.

State lives in FAKE_SYSTEMD_STATE: `calls.log` (one line per call), `<unit>.pid`,
`<unit>.journal`, `enabled/<unit>`.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import signal
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_SYSTEMD_STATE"])
HOME = Path(os.environ["HOME"])
UNIT_DIR = Path(os.environ.get("XDG_CONFIG_HOME", HOME / ".config")) / "systemd" / "user"
# What a user manager gives its services by default.
MANAGER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def unit_settings(unit: str) -> dict[str, str]:
    settings = {}
    for line in (UNIT_DIR / unit).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings[key] = value.replace("%h", str(HOME))
    return settings


def environment_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        if not match:
            raise SystemExit(f"fake systemctl: bad line in {path}: {line!r}")
        key, value = match.groups()
        env[key] = shlex.split(value)[0] if value else ""
    return env


def wait_gone(pid: int, timeout: float) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def stop(unit: str) -> None:
    pid_file = STATE / f"{unit}.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    stop_timeout = float(unit_settings(unit).get("TimeoutStopSec", "90"))
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    wait_gone(pid, stop_timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink()


def start(unit: str) -> None:
    settings = unit_settings(unit)
    env = {"HOME": str(HOME), "PATH": MANAGER_PATH}
    if "EnvironmentFile" in settings:
        env.update(environment_file(Path(settings["EnvironmentFile"].lstrip("-"))))
    # What the test itself needs to pass through to the fake Codex.
    env.update({key: value for key, value in os.environ.items() if key.startswith("FAKE_CODEX")})
    journal = (STATE / f"{unit}.journal").open("ab")
    process = subprocess.Popen(shlex.split(settings["ExecStart"]), env=env, cwd=HOME,
                               stdin=subprocess.DEVNULL, stdout=journal, stderr=journal,
                               start_new_session=True)
    (STATE / f"{unit}.pid").write_text(str(process.pid))


def main() -> int:
    args = sys.argv[1:]
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "calls.log").open("a") as log:
        log.write(" ".join(args) + "\n")
    if args[:1] != ["--user"]:
        print("fake systemctl: only --user is simulated", file=sys.stderr)
        return 2
    if os.environ.get("FAKE_SYSTEMD") == "absent":
        print("Failed to connect to bus: No medium found", file=sys.stderr)
        return 1
    command, rest = args[1], args[2:]
    enabled = STATE / "enabled"
    enabled.mkdir(exist_ok=True)
    if command in ("show-environment", "daemon-reload"):
        return 0
    if command == "enable":
        (enabled / rest[0]).touch()
        return 0
    if command == "restart":
        stop(rest[0])
        start(rest[0])
        return 0
    if command == "disable":
        now = "--now" in rest
        unit = next(arg for arg in rest if not arg.startswith("-"))
        (enabled / unit).unlink(missing_ok=True)
        if now:
            stop(unit)
        return 0
    print(f"fake systemctl: {command} is not simulated", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
