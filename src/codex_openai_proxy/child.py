"""A Codex child process whose whole process group is always stopped and reaped, and which dies
with the proxy.

`start_child` is the only way the proxy starts a process, and a started child always has one
owner that stops it: `owning(child)` for a request (`spawn_child` is the two together;
`run_child`, for the Codex probes, is built on it), or the pool of warm spares until a request
takes one (see `spares.py`). However the owner's block ends (normally, by an exception, or by
cancellation: client disconnect, timeout, shutdown), leaving it runs `Child.stop` under a
shield:

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
observed through a pidfd (which does not reap) and never through `Popen.wait` or
`Popen.returncode` (which do) until step 4.

A proxy that dies without running any of this (`kill -9`, the OOM killer) must not leave its
children running either. Two things see to that:

* The parent-death signal. Each child arms `PR_SET_PDEATHSIG` (SIGTERM) before it runs Codex.
  The kernel sends it when the *thread* that forked the child ends, not the process, so every
  child is forked by one thread that lives as long as the process (`_ForkThread`).
  `trio.lowlevel.open_process` forks from trio's worker threads, which end after 10 s idle:
  each of those would take its children down with it. SIGTERM rather than SIGKILL because the
  npm `codex` wrapper forwards SIGTERM to the native binary, its own child.
  The child arms it by running util-linux's `setpriv --pdeathsig TERM -- <argv>`, which sets
  the signal and execs Codex in the same process. Without `setpriv`, a `preexec_fn` calls
  prctl instead; but any `preexec_fn` makes Python fork the whole proxy rather than vfork it,
  which holds the event loop for as long as copying its page tables takes (~10 ms at 50 MB,
  ~60 ms at 150 MB, measured): every stream stalls at each spawn. So `setpriv` is preferred.
* The sentinel (`sentinel.py`, see `Sentinel`), a small process per proxy that is told each
  group as it starts and once it is reaped, and that SIGKILLs every group still listed when the
  proxy's end of its pipe closes: grandchildren included, which no parent-death signal reaches.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio

from . import sentinel as sentinel_script

log = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 8192
#: The longest stdout line a child may print. The largest line Codex prints is one whole agent
#: message (or a tool call's arguments), which the model's output limit keeps well under 1 MiB;
#: while a line is being parsed it is held about three times over (bytes, text, parsed JSON), so
#: this bounds what one run may hold at once to ~16 MiB. A longer line fails the run.
MAX_LINE_BYTES = 4 * 1024 * 1024
#: How much of stdout is taken from the pipe at a time. While the run waits for its client, it
#: reads no further: the pipe fills and the child blocks writing, which is the backpressure.
READ_CHUNK_BYTES = 65536
#: The parent-death signal each child arms (see the module docstring).
PARENT_DEATH_SIGNAL = signal.SIGTERM
#: How long a clean shutdown waits for the sentinel to exit before killing it.
SENTINEL_EXIT_WAIT_S = 5.0

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_prctl.restype = ctypes.c_int

T = TypeVar("T")


class LineTooLong(Exception):
    pass


@dataclass(frozen=True)
class ChildLaunch:
    """How a child is started: its command line, working directory and whole environment."""

    argv: Sequence[str]
    cwd: Path | None  # None: the proxy's own
    env: Mapping[str, str] = field(default_factory=dict)
    #: A directory that belongs to the child (its Codex home, its working directory), removed
    #: once the child has been stopped.
    owned_dir: Path | None = None


@functools.cache
def _setpriv() -> str | None:
    """util-linux's `setpriv`, if it is on PATH and can arm a parent-death signal (2.33+)."""
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        result = subprocess.run([path, "--help"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if b"--pdeathsig" in result.stdout else None


def _launch(argv: Sequence[str]) -> tuple[list[str], Callable[[], None] | None]:
    """The argv to fork, and the preexec_fn, that arm the parent-death signal and run `argv`."""
    setpriv = _setpriv()
    if setpriv is not None:
        return [setpriv, "--pdeathsig", PARENT_DEATH_SIGNAL.name.removeprefix("SIG"), "--",
                *argv], None
    return list(argv), _die_with(os.getpid())


def _die_with(parent_pid: int) -> Callable[[], None]:
    """The child's last step before exec: arm the parent-death signal (`preexec_fn`)."""

    def arm() -> None:
        _prctl(_PR_SET_PDEATHSIG, PARENT_DEATH_SIGNAL, 0, 0, 0)
        # Had the proxy died between the fork and the prctl, no signal would ever come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return arm


class _ForkThread:
    """The one thread that forks every child. It never ends, so the parent-death signal a
    child arms fires when the proxy's process ends, and only then."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def call(self, function: Callable[[], T]) -> T:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="codex-fork",
                                                daemon=True)
                self._thread.start()
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        result: list[tuple[bool, Any]] = []

        def job() -> None:
            try:
                result.append((True, function()))
            except BaseException as error:
                result.append((False, error))
            token.run_sync_soon(done.set)

        self._jobs.put(job)
        # Not cancellable: a child that was forked must be owned (stopped and reaped).
        with trio.CancelScope(shield=True):
            await done.wait()
        [(ok, value)] = result
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def _serve(self) -> None:
        while True:
            self._jobs.get()()


_fork_thread = _ForkThread()


class Sentinel:
    """The proxy's side of its sentinel process (`sentinel.py`): what it must clean up should
    the proxy die. Writes are a few bytes on a pipe the sentinel keeps reading, so they never
    block the event loop; a sentinel that is gone is logged once, and the parent-death signal
    still covers each group's leader."""

    def __init__(self, popen: subprocess.Popen[bytes], pipe: int) -> None:
        self._popen = popen
        self._pipe: int | None = pipe
        self.pid = popen.pid

    @classmethod
    @asynccontextmanager
    async def running(cls) -> AsyncIterator[Sentinel]:
        read_end, write_end = os.pipe()
        try:
            popen = await _fork_thread.call(partial(
                subprocess.Popen,
                [sys.executable, "-I", "-S", sentinel_script.__file__, str(int(signal.SIGKILL))],
                stdin=read_end, stdout=subprocess.DEVNULL, start_new_session=True,
            ))
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        os.set_blocking(write_end, False)
        sentinel = cls(popen, write_end)
        try:
            yield sentinel
        finally:
            with trio.CancelScope(shield=True):
                await sentinel._stop()

    def watch(self, pgid: int) -> None:
        self._tell(f"watch {pgid}")

    def forget(self, pgid: int) -> None:
        self._tell(f"forget {pgid}")

    def remove_on_death(self, folder: str) -> None:
        self._tell(f"folder {folder}")

    def _tell(self, line: str) -> None:
        if self._pipe is None:
            return
        try:
            os.write(self._pipe, line.encode("utf-8", "surrogateescape") + b"\n")
        except OSError as error:  # gone (EPIPE), or stopped and its pipe full (EAGAIN)
            log.warning("the sentinel (pid %s) cannot be told about child processes any more "
                        "(%s); a proxy killed now may leave grandchildren behind", self.pid,
                        error.strerror or error)
            os.close(self._pipe)
            self._pipe = None

    async def _stop(self) -> None:
        if self._pipe is not None:
            os.close(self._pipe)  # its end of file: nothing is left to clean up
            self._pipe = None
        try:
            with trio.fail_after(SENTINEL_EXIT_WAIT_S):
                await _wait_exited(self._popen.pid)
        except trio.TooSlowError:
            self._popen.kill()
            await _wait_exited(self._popen.pid)
        self._popen.wait()  # reaps at once: it has exited


async def _wait_exited(pid: int) -> None:
    """Until `pid` (a child, not yet reaped) has exited."""
    pidfd = os.pidfd_open(pid)
    try:
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
            await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)


class Child:
    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int,
                 stdin: trio.lowlevel.FdStream, stdout: trio.lowlevel.FdStream,
                 stderr: trio.lowlevel.FdStream, sentinel: Sentinel | None,
                 launch: ChildLaunch) -> None:
        self._popen = popen
        self.launch = launch
        self.pid = popen.pid
        #: Whether the child has been through its engine's start-up handshake already (a warm
        #: spare): set by whoever warmed it up.
        self.warmed = False
        self._reaped = False
        self._pidfd = pidfd
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr
        self._sentinel = sentinel
        self._stderr_tail = bytearray()
        self._stderr_closed = trio.Event()
        self._stdout_buffer = bytearray()
        self._stdout_scanned = 0  # how much of the buffer is known to hold no newline
        self._stdout_eof = False

    @property
    def returncode(self) -> int | None:
        """The leader's exit status once reaped (negative: the signal that ended it)."""
        return self._popen.returncode

    # -- output -------------------------------------------------------------------------------

    async def read_line(self) -> str | None:
        """The next stdout line without its newline, or None at end of output."""
        while True:
            newline = self._stdout_buffer.find(b"\n", self._stdout_scanned)
            if newline >= 0:
                return self._take_line(newline, newline + 1)
            if self._stdout_eof:
                return self._take_line(len(self._stdout_buffer)) if self._stdout_buffer \
                    else None
            if len(self._stdout_buffer) > MAX_LINE_BYTES:
                raise LineTooLong(f"Codex printed a line longer than {MAX_LINE_BYTES} bytes")
            self._stdout_scanned = len(self._stdout_buffer)
            data = await self._stdout.receive_some(READ_CHUNK_BYTES)
            if not data:
                self._stdout_eof = True
            self._stdout_buffer += data

    def _take_line(self, end: int, consumed: int | None = None) -> str:
        # Decoded straight from the buffer: a long line is not copied once more on the way.
        with memoryview(self._stdout_buffer) as view:
            line = str(view[:end], "utf-8", "replace")
        del self._stdout_buffer[: end if consumed is None else consumed]
        self._stdout_scanned = 0
        return line

    async def read_all(self, limit: int) -> bytes:
        """The rest of stdout, up to `limit` bytes (what comes after is read and dropped)."""
        kept = bytearray(self._stdout_buffer[:limit])
        self._stdout_buffer.clear()
        while data := await self._stdout.receive_some(READ_CHUNK_BYTES):
            kept += data[: max(0, limit - len(kept))]
        self._stdout_eof = True
        return bytes(kept)

    def stderr_tail(self) -> str:
        return self._stderr_tail.decode("utf-8", "replace")

    async def wait_stderr_closed(self) -> None:
        await self._stderr_closed.wait()

    async def drain_stderr(self) -> None:
        # Codex writes banners, warnings and logs to stderr. Draining it concurrently keeps the
        # child from blocking on a full pipe; its tail explains failures.
        while data := await self._stderr.receive_some(READ_CHUNK_BYTES):
            self._stderr_tail += data
            del self._stderr_tail[:-STDERR_TAIL_BYTES]
        self._stderr_closed.set()

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
        self._popen.wait()  # reaps at once: the leader has exited
        self._reaped = True
        os.close(self._pidfd)
        if self._sentinel is not None:
            self._sentinel.forget(self.pid)

    async def close(self) -> None:
        """After `stop`: close the pipes and remove the child's own directory."""
        for stream in (self._stdin, self._stdout, self._stderr):
            await stream.aclose()
        if self.launch.owned_dir is not None:
            shutil.rmtree(self.launch.owned_dir, ignore_errors=True)


async def start_child(launch: ChildLaunch, sentinel: Sentinel | None = None) -> Child:
    """Start the child in a new session (its own process group) with pipes on all three
    streams, forked on the fork thread, and tell the sentinel. The caller owns it from here:
    `owning` it, or stopping and closing it itself.

    Raises OSError if the program cannot be started (missing, not executable).
    """
    argv, cwd, env = launch.argv, launch.cwd, launch.env
    ours: list[trio.lowlevel.FdStream] = []
    theirs: list[int] = []
    try:
        for parent_reads in (False, True, True):  # stdin, stdout, stderr
            read_end, write_end = os.pipe()
            theirs.append(write_end if parent_reads else read_end)
            ours.append(trio.lowlevel.FdStream(read_end if parent_reads else write_end))
        if os.sep in argv[0] and not os.access(argv[0], os.X_OK):
            # Checked here because with `setpriv` in front, a missing program would be
            # setpriv's failure (exit status 127) rather than an error to report as such.
            error = errno.ENOENT if not os.path.exists(argv[0]) else errno.EACCES
            raise OSError(error, os.strerror(error), argv[0])

        def fork() -> subprocess.Popen[bytes]:
            launch_argv, preexec_fn = _launch(argv)
            return subprocess.Popen(launch_argv, stdin=theirs[0], stdout=theirs[1],
                                    stderr=theirs[2], cwd=cwd, env=dict(env),
                                    start_new_session=True, preexec_fn=preexec_fn)

        popen = await _fork_thread.call(fork)
    except BaseException:
        for stream in ours:
            stream.close()
        raise
    finally:
        for fd in theirs:  # the child has its own copies; ours would hide its end of file
            os.close(fd)
    if sentinel is not None:
        sentinel.watch(popen.pid)
    try:
        pidfd = os.pidfd_open(popen.pid)
    except OSError:
        # Out of descriptors (EMFILE) just after the fork: without a pidfd the child could not
        # be stopped safely later, so it is stopped now, before the error goes up.
        with trio.CancelScope(shield=True):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            await trio.to_thread.run_sync(popen.wait)
            if sentinel is not None:
                sentinel.forget(popen.pid)
            for stream in ours:
                await stream.aclose()
        raise
    return Child(popen, pidfd, *ours, sentinel, launch)


@asynccontextmanager
async def draining(child: Child) -> AsyncIterator[None]:
    """The child's stderr drained for the block (its pipe never fills; its tail explains a
    failure). An exception of the block goes up as the block raised it, not wrapped in the
    group of the drain's nursery, which its caller would not catch. That holds too when the
    block failed just as its owner was cancelled (the drain's Cancelled then comes along):
    the cancellation is not lost, as the scope that was cancelled still is, and the caller's
    next checkpoint raises it again."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child.drain_stderr)
            try:
                yield
            finally:
                # A grandchild that escaped the group could hold stderr open forever.
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        _, failures = group.split(trio.Cancelled)
        if failures is not None and len(failures.exceptions) == 1:
            raise failures.exceptions[0] from None
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


@asynccontextmanager
async def owning(child: Child, kill_grace_s: float) -> AsyncIterator[Child]:
    """Own a started child for the block: its stderr drained meanwhile; at the end, whatever
    ends the block, the child stopped and reaped, its pipes closed, its directory removed."""
    try:
        async with draining(child):
            try:
                yield child
            finally:
                # Shielded: this runs precisely when the request was cancelled, and it must
                # still finish. It is bounded by the kill grace plus the time SIGKILL takes.
                with trio.CancelScope(shield=True):
                    await child.stop(kill_grace_s)
    finally:
        with trio.CancelScope(shield=True):
            await child.stop(kill_grace_s)  # if the block never began
            await child.close()


@asynccontextmanager
async def spawn_child(launch: ChildLaunch, *, kill_grace_s: float,
                      sentinel: Sentinel | None = None) -> AsyncIterator[Child]:
    """`start_child`, owned for the block."""
    child = await start_child(launch, sentinel)
    async with owning(child, kill_grace_s):
        yield child


@dataclass(frozen=True)
class Completed:
    """A child run to its end by `run_child`."""

    returncode: int
    stdout: bytes
    stderr_tail: str


async def run_child(argv: Sequence[str], *, env: Mapping[str, str], timeout_s: float,
                    kill_grace_s: float, sentinel: Sentinel | None = None,
                    max_stdout_bytes: int = MAX_LINE_BYTES) -> Completed:
    """Run `argv` with an empty stdin until it exits and its output ends.

    Raises trio.TooSlowError after `timeout_s`, once the whole group has been stopped (a probe
    of the npm `codex` leaves no native binary behind), and OSError if it cannot be started.
    """
    async with spawn_child(ChildLaunch(argv, None, env), kill_grace_s=kill_grace_s,
                           sentinel=sentinel) as child:
        await child.close_stdin()
        with trio.move_on_after(timeout_s) as waited:
            stdout = await child.read_all(max_stdout_bytes)
            await child.wait_stderr_closed()
            status = await child.wait_exit()
    if waited.cancelled_caught:
        raise trio.TooSlowError
    return Completed(status, stdout, child.stderr_tail())
