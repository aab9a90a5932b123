"""No orphan, even when the proxy itself dies without a chance to clean up (`kill -9`, the OOM
killer), when a descriptor runs out just after a spawn, or when a probe of Codex hangs.

The proxy runs as a real `python -m codex_openai_proxy` process here wherever it is killed, so
that its children are its own and outlive it unless the proxy's defences work: the parent-death
signal each child arms, the sentinel process that kills every group of a dead proxy, and the
start-up sweep of scratch folders left by proxies that are gone.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from codex_openai_proxy import codex_probe

from conftest import (
    AUTH,
    chat_body,
    children_of,
    is_ready,
    is_sentinel,
    listening_url,
    open_stream,
    process_state,
    wait_dead,
)

#: Children of a killed proxy used to live for minutes; with the defences they die at once.
ORPHAN_DEADLINE_S = 5.0


async def start_server(env: dict[str, str]) -> tuple[trio.Process, str]:
    """A `codex-openai-proxy` process, and its URL once it listens."""
    server = await trio.lowlevel.open_process(
        [sys.executable, "-m", "codex_openai_proxy"], env={**os.environ, "PORT": "0", **env},
        stderr=subprocess.PIPE, start_new_session=True)
    try:
        return server, await listening_url(server)
    except BaseException:
        await stop_server(server)
        raise


async def stop_server(server: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        if server.returncode is None:
            os.killpg(server.pid, signal.SIGKILL)
        await server.wait()


def sentinel_of(server_pid: int) -> int:
    [pid] = [pid for pid in children_of(server_pid) if is_sentinel(pid)]
    return pid


def scratch_folders(parent: Path) -> list[Path]:
    return sorted(parent.glob("codex-openai-proxy-*"))


@pytest.mark.parametrize("engine", ["exec", "app-server"])
async def test_kill_9_of_the_proxy_takes_every_child_and_its_scratch_folder(
        fake_codex, tmp_path, engine):
    scratch_parent = tmp_path / "tmp"
    scratch_parent.mkdir()
    server, url = await start_server({**fake_codex.env, "FAKE_CODEX_SCENARIO": "grandchild",
                                      "CODEX_ENGINE": engine, "TMPDIR": str(scratch_parent)})
    try:
        async with (httpx.AsyncClient(base_url=url, headers=AUTH) as client,
                    open_stream(client) as stream):
            await stream.wait_for(is_ready)
            [record] = fake_codex.runs()
            pids = fake_codex.pids(record["pid"])
            assert len(pids) == 2 and all(process_state(pid) for pid in pids)
            assert len(scratch_folders(scratch_parent)) == 1
            children = children_of(server.pid)  # the Codex leader, and the sentinel
            server.kill()
            await server.wait()
            # The leader and the grandchild (which no parent-death signal reaches) both die,
            # though no one stopped them.
            for pid in pids:
                await wait_dead(pid, ORPHAN_DEADLINE_S)
        for pid in children:  # the sentinel's work is done once it has exited
            await wait_dead(pid, ORPHAN_DEADLINE_S)
        assert scratch_folders(scratch_parent) == []
    finally:
        await stop_server(server)


@pytest.mark.parametrize("launcher", ["setpriv", "preexec_fn"])
async def test_a_killed_proxy_whose_sentinel_died_too_still_takes_its_child(fake_codex,
                                                                              tmp_path, launcher):
    scratch_parent = tmp_path / "tmp"
    scratch_parent.mkdir()
    env = {**fake_codex.env, "FAKE_CODEX_SCENARIO": "hang", "CODEX_ENGINE": "exec",
           "TMPDIR": str(scratch_parent)}
    if launcher == "preexec_fn":  # a PATH without util-linux's setpriv
        env["PATH"] = str(fake_codex.bin.parent)
    alive, _ = await start_server(env)  # another proxy, alive throughout: its folder stays
    doomed, url = await start_server(env)
    try:
        async with (httpx.AsyncClient(base_url=url, headers=AUTH) as client,
                    open_stream(client) as stream):
            await stream.wait_for(is_ready)
            [record] = fake_codex.runs()
            os.kill(sentinel_of(doomed.pid), signal.SIGKILL)
            doomed.kill()
            await doomed.wait()
            # The parent-death signal alone (SIGTERM, armed by the child before it ran Codex).
            await wait_dead(record["pid"], ORPHAN_DEADLINE_S)
        assert len(scratch_folders(scratch_parent)) == 2  # nobody was left to remove it

        # The next proxy to start removes the dead one's folder, and only that one.
        before = set(scratch_folders(scratch_parent))
        successor, _ = await start_server(env)
        try:
            after = set(scratch_folders(scratch_parent))
            assert len(before - after) == 1
            [kept] = before & after
            assert f"codex-openai-proxy-{alive.pid}-" in kept.name
            assert len(after - before) == 1  # the successor's own
        finally:
            await stop_server(successor)
    finally:
        await stop_server(doomed)
        await stop_server(alive)


@pytest.mark.real_codex
@pytest.mark.parametrize("engine", ["exec", "app-server"])
@pytest.mark.parametrize("sentinel_too", [False, True], ids=["proxy", "proxy_and_sentinel"])
async def test_kill_9_with_the_real_codex_leaves_no_codex_process_behind(
        real_codex_bin, mock_upstream, tmp_path, engine, sentinel_too):
    from mock_responses import codex_home

    mock_upstream.scenario = "hang"
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(tmp_path),
           "CODEX_HOME": str(codex_home(tmp_path / "codex-home", mock_upstream.url)),
           "PROXY_API_KEY": AUTH["Authorization"].split()[1], "CODEX_BIN": real_codex_bin,
           "CODEX_ENGINE": engine}
    server, url = await start_server(env)
    try:
        async with (httpx.AsyncClient(base_url=url, headers=AUTH) as client,
                    open_stream(client) as stream):
            await stream.next_event()  # the role chunk: the run has started
            await mock_upstream.wait_for_request()  # Codex now waits on the upstream
            children = [pid for pid in children_of(server.pid) if not is_sentinel(pid)]
            grandchildren = [pid for child in children for pid in children_of(child)]
            # The proxy runs the native binary behind the npm package's Node wrapper itself:
            # the run's child (and, with app-server, the warm spares') is that binary.
            assert all(os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "codex"
                       for pid in children), children
            assert len(children) == 1 if engine == "exec" else len(children) >= 2, children
            if sentinel_too:
                # Then only the parent-death signal is left, which the kernel sends each child.
                os.kill(sentinel_of(server.pid), signal.SIGKILL)
            server.kill()
            await server.wait()
            for pid in [*children, *grandchildren]:
                await wait_dead(pid, ORPHAN_DEADLINE_S)
    finally:
        await stop_server(server)


@pytest.mark.parametrize("launcher", ["setpriv", "preexec_fn"])
async def test_children_outlive_the_threads_trio_spawns_from(tmp_path, launcher):
    # The parent-death signal fires when the *thread* that forked the child ends. Trio's own
    # spawn forks from its worker threads, which end after an idle spell (10 s; 50 ms here):
    # a child forked from one would be killed then, mid-answer.
    script = tmp_path / "check.py"
    script.write_text(
        "import os, sys, threading, trio\n"
        "import trio._core._thread_cache as cache\n"
        "cache.IDLE_TIMEOUT = 0.05\n"
        "from codex_openai_proxy import child as child_module\n"
        "from codex_openai_proxy.child import ChildLaunch, spawn_child\n"
        + ("child_module._setpriv = lambda: None\n" if launcher == "preexec_fn" else "") +
        "async def main():\n"
        "    argv = [sys.executable, '-c', 'import time; time.sleep(60)']\n"
        "    launch = ChildLaunch(argv, None, os.environ)\n"
        "    async with spawn_child(launch, kill_grace_s=0.1) as child:\n"
        "        for _ in range(3):\n"
        "            await trio.to_thread.run_sync(lambda: None)\n"
        "        while any(t.name.startswith('Trio thread') for t in threading.enumerate()):\n"
        "            await trio.sleep(0.01)\n"
        "        with trio.move_on_after(0.5):\n"
        "            print('ended', await child.wait_exit())\n"
        "            return\n"
        "        print('running')\n"
        "trio.run(main)\n")
    result = await trio.run_process([sys.executable, str(script)], capture_stdout=True,
                                    capture_stderr=True, check=False)
    assert result.stdout.decode().split() == ["running"], result.stderr.decode()


async def test_a_spawn_that_runs_out_of_descriptors_stops_its_child(start_proxy, monkeypatch):
    proxy = await start_proxy("hang")
    await proxy.server.locator.children_set_up.wait()  # the seed child has come and gone
    real_pidfd_open = os.pidfd_open
    forked: list[int] = []

    def out_of_descriptors(pid: int, *args: int) -> int:
        forked.append(pid)
        monkeypatch.setattr(os, "pidfd_open", real_pidfd_open)
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "pidfd_open", out_of_descriptors)
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    [pid] = forked
    # Stopped and reaped at once (the fixture checks the reaping), not left to hang forever.
    assert process_state(pid) is None
    health = (await proxy.client.get("/healthz")).json()
    assert health["runs"]["active"] == 0
    # The system was short of descriptors; Codex is where it was: the client is told to
    # retry shortly, not to install Codex, and Codex is not looked for again.
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "resources_exhausted"
    assert error["message"] == ("The proxy could not start Codex just now: Too many open "
                                "files. Try again shortly.")
    assert response.headers["retry-after"] == "2"
    assert "x-should-retry" not in response.headers
    assert health["codex"]["found"] is True


async def test_a_probe_that_hangs_is_stopped_with_its_whole_group(tmp_path, monkeypatch):
    # Like the npm wrapper: a process whose child would outlive it unless the group is killed.
    grandchild_file = tmp_path / "grandchild.pid"
    codex = tmp_path / "codex"
    codex.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {grandchild_file}\nwait\n")
    codex.chmod(0o755)
    monkeypatch.setattr(codex_probe, "PROBE_TIMEOUT_S", 0.5)
    install = await codex_probe.probe_codex(str(codex), dict(os.environ))
    assert not install.found
    await wait_dead(int(grandchild_file.read_text()), ORPHAN_DEADLINE_S)
