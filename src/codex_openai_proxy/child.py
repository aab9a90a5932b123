"""A Codex child process whose whole process group is always stopped and reaped.

`start_child` is the only way the proxy starts a process, and a started child always has one
owner that stops it: `owning(child)` for a request (`spawn_child` is the two together), or the
pool of warm spares until a request takes one (see `spares.py`). However the owner's block
ends (normally, by an exception, or by cancellation: client disconnect, timeout, shutdown),
leaving it runs `Child.stop` under a shield:

1. SIGINT to the process group, if the leader still runs. Codex exits in ~20 ms on SIGINT.
2. Wait up to the kill grace for the leader to exit.
3. SIGKILL to the group, always, even after a normal exit. This kills a leader that ignored
   SIGINT, and sweeps any
   grandchildren (the npm `codex` is a Node wrapper whose child is the native binary; the
   native binary runs commands of its own). Signalling the group, never just the pid, is what
   leaves nothing behind.
4. Reap the leader.

The sweep in step 3 happens while the leader is exited but not yet reaped: a zombie keeps its
pid, so the group id cannot have been reused by an unrelated process. That is why the exit is
observed through a pidfd (which does not reap) and never through `Process.wait` or
`Process.returncode` (which do) until step 4.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

log = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 8192
MAX_LINE_BYTES = 64 * 1024 * 1024


class LineTooLong(Exception):
    pass


@dataclass(frozen=True)
class ChildLaunch:
    """How a child is started: its command line, working directory and whole environment."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    #: A directory that belongs to the child (its Codex home, its working directory), removed
    #: once the child has been stopped.
    owned_dir: Path | None = None


class Child:
    def __init__(self, process: trio.Process, launch: ChildLaunch) -> None:
        self.process = process
        self.launch = launch
        self.pid = process.pid
        #: Whether the child has been through its engine's start-up handshake already (a warm
        #: spare): set by whoever warmed it up.
        self.warmed = False
        self._reaped = False
        self._pidfd = os.pidfd_open(process.pid)
        self._stderr_tail = bytearray()
        self._stdout_buffer = bytearray()
        self._stdout_eof = False
        assert process.stdin and process.stdout and process.stderr
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._stderr = process.stderr

    # -- output -------------------------------------------------------------------------------

    async def read_line(self) -> str | None:
        """The next stdout line without its newline, or None at end of output."""
        while True:
            newline = self._stdout_buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._stdout_buffer[:newline])
                del self._stdout_buffer[: newline + 1]
                return line.decode("utf-8", "replace")
            if self._stdout_eof:
                if not self._stdout_buffer:
                    return None
                line = bytes(self._stdout_buffer)
                self._stdout_buffer.clear()
                return line.decode("utf-8", "replace")
            if len(self._stdout_buffer) > MAX_LINE_BYTES:
                raise LineTooLong(f"Codex printed a line longer than {MAX_LINE_BYTES} bytes")
            data = await self._stdout.receive_some(65536)
            if not data:
                self._stdout_eof = True
            self._stdout_buffer += data

    def stderr_tail(self) -> str:
        return self._stderr_tail.decode("utf-8", "replace")

    async def drain_stderr(self) -> None:
        # Codex writes banners, warnings and logs to stderr. Draining it concurrently keeps the
        # child from blocking on a full pipe; its tail explains failures.
        while data := await self._stderr.receive_some(65536):
            self._stderr_tail += data
            del self._stderr_tail[:-STDERR_TAIL_BYTES]

    # -- input --------------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Write to stdin; a child that has gone away is not an error here (its exit is)."""
        try:
            await self._stdin.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.debug("child %s closed its stdin", self.pid)

    async def close_stdin(self) -> None:
        await self._stdin.aclose()

    # -- exit ---------------------------------------------------------------------------------

    def exit_status(self) -> int | None:
        """The exit status of an exited (not yet reaped) leader, as `returncode` would say it."""
        info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        if info is None:
            return None
        if info.si_code == os.CLD_EXITED:
            return info.si_status
        return -info.si_status

    async def wait_exit(self) -> int:
        """Wait for the leader to exit, without reaping it; its exit status."""
        # The pidfd is waited on directly by whoever needs the exit, never by a watcher task:
        # a watcher lives in a nursery that a cancellation tears down, and a shielded stop()
        # waiting on a watcher that is gone would wait forever.
        while (status := self.exit_status()) is None:
            await trio.lowlevel.wait_readable(self._pidfd)
        return status

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
            os.killpg(self.pid, signum)

    async def stop(self, kill_grace_s: float) -> None:
        """Stop the group and reap the leader (see the module docstring). Call it shielded;
        once the child is reaped, it does nothing."""
        if self._reaped:
            return
        if self.exit_status() is None:
            self._signal_group(signal.SIGINT)
            with trio.move_on_after(kill_grace_s):
                await self.wait_exit()
        self._signal_group(signal.SIGKILL)
        # SIGKILL cannot be ignored, so this wait is short.
        await self.wait_exit()
        await self.process.wait()
        self._reaped = True
        os.close(self._pidfd)

    async def close(self) -> None:
        """After `stop`: close the pipes and remove the child's own directory."""
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                await stream.aclose()
        if self.launch.owned_dir is not None:
            shutil.rmtree(self.launch.owned_dir, ignore_errors=True)


async def start_child(launch: ChildLaunch) -> Child:
    """Start the child in a new session (its own process group) with pipes on all three
    streams. The caller owns it from here: `owning` it, or stopping and closing it itself.

    Raises OSError if the program cannot be started (missing, not executable).
    """
    process = await trio.lowlevel.open_process(
        list(launch.argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        cwd=str(launch.cwd),
        env=dict(launch.env),
    )
    return Child(process, launch)


@asynccontextmanager
async def owning(child: Child, kill_grace_s: float) -> AsyncIterator[Child]:
    """Own a started child for the block: its stderr drained meanwhile; at the end, whatever
    ends the block, the child stopped and reaped, its pipes closed, its directory removed."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child.drain_stderr)
            try:
                yield child
            finally:
                # Shielded: this runs precisely when the request was cancelled, and it must
                # still finish. It is bounded by the kill grace plus the time SIGKILL takes.
                with trio.CancelScope(shield=True):
                    await child.stop(kill_grace_s)
                # A grandchild that escaped the group could hold stderr open forever.
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await child.stop(kill_grace_s)  # if the block never began
            await child.close()


@asynccontextmanager
async def spawn_child(launch: ChildLaunch, *, kill_grace_s: float) -> AsyncIterator[Child]:
    """`start_child`, owned for the block."""
    child = await start_child(launch)
    async with owning(child, kill_grace_s):
        yield child
