"""scripts/install.sh end to end, into a temporary HOME: a real pip install of this checkout,
the env file, the systemd unit, re-runs, --uninstall, --foreground, and what it says when the
machine lacks something.

The fake Codex is on PATH, so the npm step is skipped. Where a test needs `systemctl --user`
it gets tests/fake_systemctl.py, which starts the unit's ExecStart the way the user manager
would; the real one cannot run without a systemd user session.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from codex_openai_proxy.settings import OPTIONS, Settings

from conftest import REPO, TESTS, listening_url, wait_dead

pytestmark = pytest.mark.install

INSTALL = REPO / "scripts" / "install.sh"
SMOKE = REPO / "scripts" / "smoke.sh"
UNIT = REPO / "systemd" / "codex-openai-proxy.service"
SERVICE = "codex-openai-proxy.service"
BASH = shutil.which("bash")


@dataclass
class Machine:
    """A user account in a temporary HOME, with this checkout's scripts."""

    home: Path
    env: dict[str, str]
    systemd_state: Path

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / "codex-openai-proxy"

    @property
    def venv(self) -> Path:
        return self.data_dir / "venv"

    @property
    def env_file(self) -> Path:
        return self.home / ".config" / "codex-openai-proxy" / "env"

    @property
    def unit_file(self) -> Path:
        return self.home / ".config" / "systemd" / "user" / SERVICE

    def env_settings(self) -> dict[str, str]:
        settings = {}
        for line in self.env_file.read_text().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                settings[key] = value.strip('"')
        return settings

    async def run(self, script: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
        return await trio.run_process(
            [BASH, str(script), *args], env={**self.env, **env}, cwd=self.home,
            capture_stdout=True, capture_stderr=True, check=False)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout.decode() + result.stderr.decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def machine(tmp_path: Path, fake_codex) -> Machine:
    home = tmp_path / "home"
    home.mkdir()
    stub_bin = tmp_path / "stub-bin"
    stub_bin.mkdir()
    systemctl = stub_bin / "systemctl"
    fake_systemctl = TESTS / "fake_systemctl.py"
    systemctl.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake_systemctl}" "$@"\n')
    systemctl.chmod(0o755)
    # The user's environment, minus anything that would point the install elsewhere.
    env = {key: value for key, value in os.environ.items()
           if key not in {option.env for option in OPTIONS}
           and not key.startswith(("XDG_", "CODEX_", "VIRTUAL_ENV"))}
    real_home = Path.home()
    env.update({
        "HOME": str(home),
        "PATH": f"{stub_bin}{os.pathsep}{fake_codex.env['PATH']}",
        "FAKE_CODEX_RECORD_DIR": fake_codex.env["FAKE_CODEX_RECORD_DIR"],
        "FAKE_SYSTEMD_STATE": str(tmp_path / "systemd"),
        # pip keeps using the real user's configuration (indexes) and cache.
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(real_home / ".cache" / "pip")),
    })
    for config in (real_home / ".config" / "pip" / "pip.conf", real_home / ".pip" / "pip.conf"):
        if config.exists() and "PIP_CONFIG_FILE" not in env:
            env["PIP_CONFIG_FILE"] = str(config)
    return Machine(home, env, tmp_path / "systemd")


@pytest.fixture
def adopt_orphans(machine: Machine):
    """Make this process the subreaper of what it starts, for the length of a test: a service
    started by the fake systemctl outlives that command, and must be reaped by someone."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    assert libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0

    def reap(pid: int) -> int:
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    try:
        yield reap
    finally:
        # A test that failed half-way may leave its service running.
        for pid_file in machine.systemd_state.glob("*.pid"):
            pid = int(pid_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        libc.prctl(pr_set_child_subreaper, 0, 0, 0, 0)


# -- installing without systemd, re-running, uninstalling ----------------------------------------

async def test_install_rerun_and_uninstall_without_systemd(machine: Machine, fake_codex):
    result = await machine.run(INSTALL, "--no-systemd")
    assert result.returncode == 0, output(result)
    said = output(result)

    # The proxy, from this checkout, in its own venv (not an editable link to the checkout).
    proxy = machine.venv / "bin" / "codex-openai-proxy"
    assert os.access(proxy, os.X_OK)
    where = subprocess.run([machine.venv / "bin" / "python", "-c",
                            "import codex_openai_proxy; print(codex_openai_proxy.__file__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(machine.venv))

    # The env file: every key the service needs, Codex as an absolute path, only for the user.
    settings = machine.env_settings()
    defaults = Settings()
    assert settings["HOST"] == defaults.host
    assert settings["PORT"] == str(defaults.port)
    assert settings["PROXY_API_KEY"] == defaults.api_key
    assert settings["CODEX_MODEL"] == defaults.codex_model == ""  # Codex's own default
    # ... which the install names: the fake Codex's catalog's first model.
    assert "Model:    gpt-6.1-sol" in said
    assert settings["CODEX_BIN"] == str(fake_codex.bin)
    node = subprocess.run(["sh", "-c", "command -v node"], capture_output=True, text=True,
                          env=machine.env).stdout.strip()
    if node:
        assert str(Path(node).parent) in settings["PATH"].split(":")
    assert stat.S_IMODE(machine.env_file.stat().st_mode) == 0o600

    assert not machine.unit_file.exists()  # --no-systemd
    assert "Base URL: http://127.0.0.1:11435/v1" in said
    assert "API Key:  codex-local-secret" in said
    assert "codex login" not in said  # the fake Codex is logged in

    # A re-run upgrades the installed package in place...
    installed = Path(where)
    installed.write_text(installed.read_text() + "\nBROKEN = True\n")
    # ...and keeps the user's edits: a changed value, an added setting, and a deleted key
    # that comes back (with its default) at the end.
    text = machine.env_file.read_text()
    text = text.replace('PORT="11435"', 'PORT="12345"')
    text = "\n".join(line for line in text.splitlines() if not line.startswith("CODEX_MODEL="))
    machine.env_file.write_text(text + '\nPROXY_LOG_LEVEL="debug"\n')

    result = await machine.run(INSTALL, "--no-systemd", PORT="11999",
                               FAKE_CODEX_LOGIN="none")
    assert result.returncode == 0, output(result)
    said = output(result)
    assert "BROKEN" not in installed.read_text()
    settings = machine.env_settings()
    assert settings["PORT"] == "12345"
    assert settings["PROXY_LOG_LEVEL"] == "debug"
    assert settings["CODEX_MODEL"] == ""
    assert machine.env_file.read_text().rstrip().endswith('CODEX_MODEL=""')
    assert "added CODEX_MODEL" in said
    assert "kept PORT=12345" in said  # PORT=11999 was asked for, the file wins
    assert "Base URL: http://127.0.0.1:12345/v1" in said
    assert f"{fake_codex.bin} login" in said  # Codex now says it is not logged in

    # Uninstall: the venv goes, the edited env file stays, and nothing else is touched.
    others = [machine.home / ".codex" / "auth.json",
              machine.home / ".local" / "share" / "other-app" / "data",
              machine.home / ".config" / "other-app" / "config"]
    for path in others:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("keep me")
    result = await machine.run(INSTALL, "--uninstall")
    assert result.returncode == 0, output(result)
    assert not machine.data_dir.exists()
    assert machine.env_file.exists()
    assert "it was edited after install" in output(result)
    assert all(path.read_text() == "keep me" for path in others)
    assert fake_codex.bin.exists()


# -- the service ---------------------------------------------------------------------------------

async def test_service_install_starts_it_and_uninstall_stops_it(machine: Machine, fake_codex,
                                                                  adopt_orphans):
    port = free_port()
    # A setting the user had before installing: kept, and the service runs with it. (The fake
    # Codex simulates `codex exec` only.)
    machine.env_file.parent.mkdir(parents=True)
    machine.env_file.write_text('CODEX_ENGINE="exec"\n')

    result = await machine.run(INSTALL, PORT=str(port))
    said = output(result)
    journal = machine.systemd_state / f"{SERVICE}.journal"
    assert result.returncode == 0, said + (journal.read_text() if journal.exists() else "")
    assert machine.unit_file.read_text().rstrip() == UNIT.read_text().rstrip()
    assert (machine.systemd_state / "enabled" / SERVICE).exists()
    calls = (machine.systemd_state / "calls.log").read_text().splitlines()
    assert calls[-3:] == ["--user daemon-reload", f"--user enable {SERVICE}",
                          f"--user restart {SERVICE}"]
    assert f"the proxy is up: http://127.0.0.1:{port}/healthz" in said
    assert f"Base URL: http://127.0.0.1:{port}/v1" in said
    assert machine.env_settings()["CODEX_ENGINE"] == "exec"

    # The service answers, with nothing but the env file to go on (the manager's
    # environment is not the installing shell's).
    smoke = await machine.run(SMOKE)
    assert smoke.returncode == 0, output(smoke) + journal.read_text()
    assert "streamed an answer" in output(smoke)

    # A re-run restarts the service on the new code, and changes nothing else.
    first_pid = int((machine.systemd_state / f"{SERVICE}.pid").read_text())
    env_before = machine.env_file.read_text()
    result = await machine.run(INSTALL)
    assert result.returncode == 0, output(result)
    assert adopt_orphans(first_pid) == 0  # SIGTERM: a clean exit
    assert machine.env_file.read_text() == env_before
    assert "kept" in output(result)

    second_pid = int((machine.systemd_state / f"{SERVICE}.pid").read_text())
    result = await machine.run(INSTALL, "--uninstall")
    assert result.returncode == 0, output(result)
    assert adopt_orphans(second_pid) == 0
    assert not machine.unit_file.exists()
    assert not (machine.systemd_state / "enabled" / SERVICE).exists()
    assert not machine.data_dir.exists()
    assert machine.env_file.exists()  # it held the user's own setting before install
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")


async def test_without_a_systemd_user_session_it_offers_foreground(machine: Machine, fake_codex):
    result = await machine.run(INSTALL, FAKE_SYSTEMD="absent", PORT="0")
    assert result.returncode == 0, output(result)
    said = output(result)
    assert "no systemd user session" in said
    assert "bash scripts/install.sh --foreground" in said
    assert not machine.unit_file.exists()

    # --foreground: the proxy in this terminal, working (smoke.sh passes), stopped by SIGTERM.
    process = await trio.lowlevel.open_process(
        [BASH, str(INSTALL), "--foreground"], env={**machine.env, "CODEX_ENGINE": "exec"},
        cwd=machine.home, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        url = await listening_url(process)
        smoke = await machine.run(SMOKE, f"{url}/v1")
        assert smoke.returncode == 0, output(smoke)
        assert output(smoke).count("smoke: ok") == 4  # health, models, a completion, usage
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await process.wait() == 0
    for run in fake_codex.runs():
        for pid in fake_codex.pids(run["pid"]):
            await wait_dead(pid)

    # Nobody edited the env file, so --uninstall takes everything back.
    result = await machine.run(INSTALL, "--uninstall")
    assert result.returncode == 0, output(result)
    # (pip itself leaves traces elsewhere in HOME: it asks `rustc --version` for its
    # user agent, and rustup notes that in ~/.rustup.)
    leftovers = [path for place in (".local", ".config")
                 for path in (machine.home / place).rglob("*") if not path.is_dir()]
    assert leftovers == []


# -- what the machine lacks ----------------------------------------------------------------------

async def test_it_says_which_python_is_missing_or_too_old(machine: Machine, tmp_path: Path):
    result = await machine.run(INSTALL, PYTHON=str(tmp_path / "no-python"))
    assert result.returncode == 1
    assert "Python 3.11 or newer" in output(result)
    assert "no-python not found" in output(result)

    old_python = tmp_path / "python3.9"
    # Like an old interpreter: it answers --version, and its sys.version_info check fails.
    old_python.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && { echo "Python 3.9.18"; exit 0; }\nexit 1\n')
    old_python.chmod(0o755)
    result = await machine.run(INSTALL, PYTHON=str(old_python))
    assert result.returncode == 1
    assert "Python 3.11 or newer" in output(result)
    assert "is Python 3.9.18" in output(result)
    assert not machine.data_dir.exists()


async def test_it_says_node_and_npm_are_missing_when_codex_must_be_installed(
        machine: Machine, tmp_path: Path):
    # A PATH with the basic tools and Python, but no node, npm or codex.
    bare_bin = tmp_path / "bare-bin"
    bare_bin.mkdir()
    for tool in ("dirname", "sed", "head", "grep", "sha256sum", "cat", "mkdir", "rm", "rmdir"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                               text=True).stdout.strip()
        (bare_bin / tool).symlink_to(found)
    (bare_bin / "python3").symlink_to(sys.executable)
    result = await machine.run(INSTALL, "--no-systemd", PATH=str(bare_bin))
    assert result.returncode == 1
    said = output(result)
    assert "this machine lacks" in said
    assert "Node.js 18 or newer (node not found)" in said
    assert "npm" in said
    assert "Python" not in said.split("lacks", 1)[1]
    assert not machine.data_dir.exists()


async def test_a_codex_bin_that_does_not_exist_is_named(machine: Machine):
    result = await machine.run(INSTALL, "--no-systemd", CODEX_BIN="/nowhere/codex")
    assert result.returncode == 1
    assert "CODEX_BIN=/nowhere/codex (from the environment) is not an executable" in output(result)


async def test_help_and_unknown_options(machine: Machine):
    result = await machine.run(INSTALL, "--help")
    assert result.returncode == 0
    assert "--foreground" in output(result) and "--uninstall" in output(result)
    result = await machine.run(INSTALL, "--frobnicate")
    assert result.returncode == 1
    assert "unknown option --frobnicate" in output(result)


# -- the unit file and the Roo Code settings ------------------------------------------------------

async def test_the_unit_file_passes_systemd_analyze_verify(tmp_path: Path):
    # `verify` wants ExecStart to exist: a stand-in at the path %h expands to.
    home = tmp_path / "home"
    proxy = home / ".local" / "share" / "codex-openai-proxy" / "venv" / "bin"
    proxy.mkdir(parents=True)
    (proxy / "codex-openai-proxy").symlink_to(sys.executable)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    result = await trio.run_process(
        ["systemd-analyze", "--user", "verify", str(UNIT)],
        env={**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)},
        capture_stdout=True, capture_stderr=True, check=False)
    # verify reports most problems (an unknown KillMode, say) as warnings, exit status 0.
    assert result.returncode == 0, output(result)
    assert output(result).strip() == ""


def test_the_unit_keeps_the_lifecycle_promises():
    unit = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    assert unit["Type"] == "exec"
    assert unit["Restart"] == "on-failure"
    assert unit["KillMode"] == "mixed"
    # Long enough for the proxy's own shutdown: the kill grace, then hypercorn's graceful
    # timeout (grace + 5 s).
    assert int(unit["TimeoutStopSec"]) > 2 * Settings().kill_grace_s + 5
    assert unit["ExecStart"] == "%h/.local/share/codex-openai-proxy/venv/bin/codex-openai-proxy"
    assert unit["EnvironmentFile"] == "%h/.config/codex-openai-proxy/env"
    # 256 streams need ~1,300 descriptors (docs/benchmarks.md), past the usual 1,024.
    assert int(unit["LimitNOFILE"]) >= 4096
    # Codex's sandbox and Node's JIT must keep working.
    for breaks_codex in ("ProtectHome", "ProtectSystem", "PrivateUsers", "RestrictNamespaces",
                         "MemoryDenyWriteExecute"):
        assert breaks_codex not in unit
