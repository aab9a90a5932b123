"""Codex runs: one child per request, bounded in number, time and lifetime (I/O).

A request asks `RunManager.start(nursery, request)` for a run. `start` waits for a free slot
(in order, up to the queue timeout), spawns the child and returns a `Run` whose `outputs`
channel carries the answer as it comes (content, reasoning, tool calls); when the channel
ends, `Run.ending` says how the answer ended (`Finished` or `Failed`). What the
child is and how to talk to it is the engine's business (`engines/`); this module only knows
slots, the queue, the deadline and the child's lifetime.

Who owns what, and why:

* The runner task lives in the *request's* nursery (see `lifetime.py`), not in the handler and
  not in the response body generator. Trio forbids `yield` inside a cancel scope opened in a
  generator, and a body generator only runs while the client reads; a runner of its own keeps
  reading the child and enforcing the deadline even when the client has stalled.
* The outputs channel holds nothing (capacity 0), and a long piece of text goes into it in
  pieces of at most `MAX_OUTPUT_CHARS`: the runner hands each piece to the reader and waits
  for it to be taken before it reads the child's next line. A client that stops reading
  therefore stops the runner, which stops reading the child's stdout; the pipe fills and Codex
  blocks writing. What a request holds is bounded (one line of the child's output, one piece
  in hand), not the whole answer. Meanwhile the deadline still runs, and the web layer drops a
  client that takes nothing for `PROXY_WRITE_TIMEOUT_S` (see `lifetime.py`).
* The run's deadline is a cancel scope around the engine's driver, counted from the child's
  start (time spent queued is bounded separately by the queue timeout). Its expiry ends the
  answer with a `timeout` error; the child is then stopped like any other (see `child.py`).
* When the request ends, whatever the reason (answer sent, client gone, server shutting down),
  its nursery is cancelled, which cancels the runner, whose `spawn_child` block stops the
  process group under a shield. Nothing depends on the client to clean up.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import shutil
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import trio

from . import errors
from .answer import (
    AnswerAssembler,
    Content,
    Failed,
    Finished,
    Output,
    Reasoning,
    codex_failure_error,
)
from .chat_request import ChatRequest
from .child import MAX_LINE_BYTES, Child, LineTooLong, owning, spawn_child
from .codex_events import (
    CodexEvent,
    Notice,
    PlanLimitsUpdated,
    TurnFailed,
    Usage,
    failure,
    safe_for_client,
)
from .codex_setup import CodexLocator
from .engines import EngineRun, Workspace, prepare_run
from .engines.app_server import RateLimitsUnreadable, read_rate_limits
from .log_text import log_safe
from .plan_limits import PlanLimits, explain
from .scratch import ScratchRoot
from .settings import EngineName, Settings
from .spares import SparePool

log = logging.getLogger(__name__)

#: The longest piece of text the runner hands over at once: a long message is relayed in
#: pieces of this many characters (at most 64 KiB in memory, 4 bytes a character).
MAX_OUTPUT_CHARS = 16384
#: The most memory one running slot holds, in bytes: the longest line Codex may print
#: (`child.MAX_LINE_BYTES`), about three times over while it is parsed (bytes, text, parsed
#: JSON), and the message it carries, kept until the run ends (deltas are reconciled with the
#: whole message). A run waiting on a client that does not read holds no more than this.
RUN_MEMORY_BUDGET = 4 * MAX_LINE_BYTES
#: The most a request holds once its run has ended (its slot free again) while its client
#: takes its time: the one piece of text in the reader's hands.
CONNECTION_MEMORY_BUDGET = 4 * MAX_OUTPUT_CHARS

StopReason = Literal["disconnect", "shutdown"]
Outcome = Literal["ok", "failed", "timeout", "disconnect", "shutdown"]

#: How many distinct Codex warnings are remembered (each is logged once): a bound, because a
#: warning can quote what a client sent.
MAX_REMEMBERED_WARNINGS = 64

_run_numbers = itertools.count(1)


#: Why `/v1/usage?refresh` read nothing new, once the server is shutting down.
SHUTTING_DOWN = "the proxy is shutting down"

#: Why a spawn fails when it is the Codex program that is missing or cannot be run (then it is
#: looked for again, and the client told to install it), as against the system being short of
#: something (EMFILE, ENOMEM, EAGAIN...), which says nothing about Codex.
CODEX_IS_MISSING = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM,
                              errno.ENOEXEC, errno.ELOOP, errno.ENAMETOOLONG})


@dataclass(eq=False)
class Run:
    """One Codex run, as the web layer sees it."""

    number: int
    request: ChatRequest
    outputs: trio.MemoryReceiveChannel[Output]
    started_at: float = field(default_factory=time.monotonic)
    engine: EngineName | None = None
    pid: int | None = None
    stop_reason: StopReason | None = None
    returncode: int | None = None
    outcome: Outcome | None = None  # set when the answer (or its error) is handed over
    ending: Finished | Failed | None = None  # the answer's end, once `outputs` has ended
    usage: Usage | None = None
    _scope: trio.CancelScope | None = None  # the innermost scope `stop` cancels

    @property
    def end_reason(self) -> str:
        """How the child ended, for the request's log line and the metrics."""
        if self.outcome in ("ok", "failed"):
            return self.outcome
        # Anything else was ended from outside: the deadline, the shutdown, or (unanswered,
        # with no other reason) the client leaving.
        return f"killed_on_{self.outcome or self.stop_reason or 'disconnect'}"

    def log_fields(self) -> str:
        """The run's part of the request's log line."""
        usage = self.usage
        return (
            f"model={log_safe(self.request.model)} stream={str(self.request.stream).lower()} "
            f"engine={self.engine} pid={self.pid} child={self.end_reason} exit={self.returncode}"
            + (f" usage={usage.input_tokens}/{usage.output_tokens}"
               f"/cached={usage.cached_input_tokens}"
               f"/reasoning={usage.reasoning_output_tokens}" if usage else "")
        )

    def stop(self, reason: StopReason) -> None:
        """Cancel whatever the run is doing: getting ready, or driving its child."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._scope is not None:
            self._scope.cancel()

    def cancel_scope(self, deadline: float = float("inf")) -> trio.CancelScope:
        """A scope, inside the previous one, that `stop` cancels from now on (at once, if the
        run was stopped already). Only the innermost is cancelled: trio hands a Cancelled to
        the outermost cancelled scope, and the scope around the driver must catch it to end
        the answer with the reason."""
        self._scope = trio.CancelScope(deadline=deadline)
        if self.stop_reason is not None:
            self._scope.cancel()
        return self._scope


class NoticeLog:
    """Codex's operational notices, logged: each distinct warning once, the rest at debug."""

    def __init__(self) -> None:
        self._warned: dict[str, None] = {}

    def log(self, run_number: int, notice: Notice) -> None:
        # Codex's warnings (e.g. "Model metadata for `gpt-5` not found") repeat on every run:
        # worth one line in the log, not one per request.
        # Codex's text quotes what the client sent (the model, the prompt): escaped and cut.
        detail = log_safe(notice.detail)
        if notice.kind == "warning" and detail not in self._warned:
            self._warned[detail] = None
            if len(self._warned) > MAX_REMEMBERED_WARNINGS:
                del self._warned[next(iter(self._warned))]
            log.warning("Codex says: %s", detail)
        else:
            log.debug("run %d %s: %s", run_number, notice.kind, detail)

    def __len__(self) -> int:
        """How many warnings it remembers having logged."""
        return len(self._warned)


class AnswerSink:
    """A run's `EventSink`: the answer policy, and the channel the answer leaves by."""

    def __init__(self, run: Run, send: trio.MemorySendChannel[Output],
                 assembler: AnswerAssembler, notices: NoticeLog,
                 plan_limits: PlanLimits) -> None:
        self._run = run
        self._send = send
        self._assembler = assembler
        self._notices = notices
        self._plan_limits = plan_limits

    @property
    def answered(self) -> bool:
        return self._run.outcome is not None

    async def deliver(self, events: Sequence[CodexEvent]) -> None:
        for event in events:
            if isinstance(event, Notice):
                self._notices.log(self._run.number, event)
                continue
            if isinstance(event, PlanLimitsUpdated):
                self._plan_limits.update(event.snapshot, time.time())
                continue
            if isinstance(event, TurnFailed) and event.kind in ("usage_limit", "rate_limit"):
                # Codex reports the limits just before the failure they caused.
                event = explain(event, self._plan_limits, time.time())
            if isinstance(event, TurnFailed):
                # The client is shown only what is safe to show; the log gets all of it.
                log.warning("run %d: Codex failed: %s", self._run.number,
                            log_safe(event.detail or event.message))
            for output in self._assembler.feed(event):
                if isinstance(output, Finished):
                    self.end(output, "ok")
                elif isinstance(output, Failed):
                    self.end(output, "failed")
                else:
                    for piece in split_output(output):
                        # A reader that has gone (its request ended) no longer needs the answer.
                        with contextlib.suppress(trio.BrokenResourceError,
                                                 trio.ClosedResourceError):
                            await self._send.send(piece)

    def end(self, ending: Finished | Failed, outcome: Outcome) -> None:
        """End the answer: record how, and end the outputs channel so that the reader, having
        read everything before it, finds `Run.ending`. Only a run's first ending counts.

        Synchronous on purpose: it is also called where the run has been cancelled (deadline,
        shutdown), and the answer must still end before the child is stopped."""
        run = self._run
        if run.outcome is None:
            run.outcome, run.ending = outcome, ending
            if isinstance(ending, Finished):
                run.usage = ending.usage
            self._send.close()


class RunManager:
    def __init__(self, settings: Settings, locator: CodexLocator, scratch: ScratchRoot,
                 spares: SparePool | None = None) -> None:
        self.settings = settings
        self.locator = locator
        self.scratch = scratch
        self.spares = spares
        #: What the children have said about the ChatGPT plan's limits (`GET /v1/usage`).
        self.plan_limits = PlanLimits()
        self._slots = trio.CapacityLimiter(settings.max_concurrent)
        self._queued: set[trio.CancelScope] = set()
        self._queue_changed = trio.Event()
        self.active: set[Run] = set()
        self.closing = False
        self._plan_reads: set[trio.CancelScope] = set()  # `read_plan_limits` under way
        self._notices = NoticeLog()
        self._idle = trio.Event()
        self._idle.set()

    # -- the web layer's side ---------------------------------------------------------------

    async def start(self, nursery: trio.Nursery, request: ChatRequest) -> Run:
        """Queue for a slot, spawn Codex, and return the run; raises `ApiError` (429, 503)."""
        if self.closing:
            raise errors.shutting_down()
        run: Run = await nursery.start(self._runner, request)
        return run

    def close(self) -> None:
        """Refuse new runs and stop every queued and running one (server shutdown)."""
        self.closing = True
        if self.spares is not None:
            self.spares.close()
        for scope in list(self._queued):
            scope.cancel()
        for run in list(self.active):
            run.stop("shutdown")
        for reading in list(self._plan_reads):
            reading.cancel()

    async def wait_idle(self) -> None:
        """Until no child is running (every one stopped and reaped)."""
        while not self._idle.is_set():
            await self._idle.wait()

    @property
    def queued(self) -> int:
        return len(self._queued)

    async def wait_queued(self, count: int) -> None:
        """Until exactly `count` requests wait for a slot (for tests and benchmarks)."""
        while self.queued != count:
            await self._queue_changed.wait()

    def _note_queue_change(self) -> None:
        self._queue_changed.set()
        self._queue_changed = trio.Event()

    # -- the runner -------------------------------------------------------------------------

    async def _runner(self, request: ChatRequest, task_status: trio.TaskStatus[Run]) -> None:
        async with self._slot():
            # Capacity 0: each output waits for the reader (see the module docstring).
            send, receive = trio.open_memory_channel[Output](0)
            run = Run(next(_run_numbers), request, receive)
            # Active from the moment it holds a slot until after the reap and the cleanup, so
            # that `close()` reaches it at any point and `wait_idle()` means "nothing left".
            # No checkpoint between the test of `closing` and joining `active`: a shutdown
            # either came before (refused here) or finds the run (and cancels it).
            if self.closing:
                raise errors.shutting_down()
            self._enter(run)
            try:
                with run.cancel_scope():
                    await self._run_child(run, send, task_status)
                if run.pid is None and run.stop_reason == "shutdown":
                    raise errors.shutting_down()  # stopped before its child started
            finally:
                log.debug("run %d pid=%s ended: %s, exit %s, after %.2fs", run.number, run.pid,
                          run.end_reason, run.returncode, time.monotonic() - run.started_at)
                self._leave(run)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """A slot held for the block, after waiting in the queue for it if need be."""
        slot = object()
        await self._wait_for_slot(slot)
        try:
            yield
        finally:
            self._slots.release_on_behalf_of(slot)

    @contextlib.contextmanager
    def _run_folder(self) -> Iterator[Path]:
        """An empty folder in the scratch root for the block, removed after it."""
        try:
            folder = Path(self.scratch.new_run_folder())
        except OSError as error:
            raise _storage_error(error, self.scratch.path) from None
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def _wait_for_slot(self, slot: object) -> None:
        try:
            self._slots.acquire_on_behalf_of_nowait(slot)
            return
        except trio.WouldBlock:
            pass
        queue_scope = trio.CancelScope(deadline=trio.current_time() + self.settings.queue_timeout_s)
        self._queued.add(queue_scope)
        self._note_queue_change()
        try:
            with queue_scope:
                await self._slots.acquire_on_behalf_of(slot)
                return
        finally:
            self._queued.discard(queue_scope)
            self._note_queue_change()
        # Only reached when the queue scope itself was cancelled: by its deadline or shutdown.
        # (A client that leaves while queued cancels an outer scope instead, and its place in
        # the limiter's queue is given up as the Cancelled passes through acquire.)
        if self.closing:
            raise errors.shutting_down()
        raise errors.queue_full(self.settings.max_concurrent, self.settings.queue_timeout_s)

    async def _run_child(self, run: Run, send: trio.MemorySendChannel[Output],
                         task_status: trio.TaskStatus[Run]) -> None:
        """Within the run's cancel scope: find Codex, spawn it, drive it, stop it."""
        settings = self.settings
        setup = await self.locator.get()
        if not setup.install.found:
            raise errors.codex_unavailable()  # the locator has logged why
        with self._run_folder() as scratch_dir:
            try:
                workspace = Workspace.inside(scratch_dir)
                # In a thread: exec writes up to PROXY_MAX_IMAGES_MB of images, which can block
                # on a disk; app-server renders the conversation, which can be large.
                engine_run = await trio.to_thread.run_sync(prepare_run, run.request, setup,
                                                           settings, workspace)
            except OSError as error:
                raise _storage_error(error, str(scratch_dir)) from None
            run.engine = engine_run.engine
            if settings.log_bodies:
                log.debug("run %d input: %s", run.number,
                          log_safe(engine_run.describe_input(), limit=None))
            try:
                await self._spawn_and_drive(run, engine_run, workspace, send, task_status)
            finally:
                engine_run.release()

    async def _spawn_and_drive(self, run: Run, engine_run: EngineRun, workspace: Workspace,
                               send: trio.MemorySendChannel[Output],
                               task_status: trio.TaskStatus[Run]) -> None:
        settings = self.settings
        sink = AnswerSink(run, send, self._assembler(run.request), self._notices,
                          self.plan_limits)
        child: Child | None = None
        spare, launch = None, None
        if self.spares is not None and engine_run.spare_key is not None:
            spare = await self.spares.take(engine_run.spare_key)
        if spare is None:
            try:
                launch = engine_run.launch(workspace)  # makes the child's folders
            except OSError as error:
                raise _storage_error(error, str(workspace.private)) from None
        try:
            # Plain `async with`, not an AsyncExitStack: a run ends with a Cancelled passing
            # through here (the request's nursery stops the child once the answer is out), and
            # AsyncExitStack re-raises it from a frame that keeps it, a reference cycle that
            # held each finished run (frames, tasks, pipes: ~250 objects) until a full garbage
            # collection, which then stalled every stream at once (~100 ms at 64 streams; see
            # docs/benchmarks.md).
            async with (owning(spare, settings.kill_grace_s) if launch is None
                        else spawn_child(launch, kill_grace_s=settings.kill_grace_s,
                                         sentinel=self.locator.sentinel)) as child, \
                    send:
                run.pid = child.pid
                # The deadline counts from the child's start; a shutdown cancels this too, and
                # either way the answer ends with an error before the child is stopped.
                driving = run.cancel_scope(trio.current_time() + settings.request_timeout_s)
                task_status.started(run)
                try:
                    with driving:
                        await engine_run.drive(child, sink)
                        if sink.answered:
                            # Codex exits by itself once its work is over and the driver has
                            # let go of it: give it the kill grace to do so before the stop
                            # in `spawn_child` signals it.
                            with trio.move_on_after(settings.kill_grace_s):
                                await child.wait_exit()
                except LineTooLong as error:
                    sink.end(Failed(codex_failure_error(failure(str(error)))), "failed")
                except OSError as error:  # the engine's files (the rollout) could not be written
                    sink.end(Failed(_storage_error(error, "the child's Codex home")), "failed")
                except Exception:
                    # A bug here must not take the request's nursery (and the response) down
                    # with it: the client gets an error, the child is still stopped.
                    log.exception("run %d failed inside the proxy", run.number)
                    sink.end(Failed(errors.internal_error("the run failed")), "failed")
                if driving.cancelled_caught:
                    if run.stop_reason == "shutdown":
                        sink.end(Failed(errors.shutting_down()), "shutdown")
                    else:
                        sink.end(Failed(errors.run_timeout(settings.request_timeout_s)),
                                 "timeout")
        except OSError as error:
            if child is not None:
                raise  # Codex did start: this is no failure to start it
            if error.errno == errno.E2BIG:
                # The command line (images on `codex exec`) is over the system's limit: the
                # request is too large, and Codex itself is as installed as it was.
                log.warning("run %d: Codex's command line is over the system's limit: %s",
                            run.number, error.strerror)
                raise errors.arguments_too_long() from None
            if error.errno not in CODEX_IS_MISSING:
                # Out of descriptors, memory or processes: the system's state, not Codex's.
                # Codex is not looked for again, and the client may retry soon.
                log.warning("run %d: could not start the Codex CLI: %s", run.number,
                            error.strerror or error)
                raise errors.system_resources_exhausted(
                    error.strerror or "the system refused to start a process") from None
            self.locator.forget()
            log.warning("run %d: could not start the Codex CLI %r: %s", run.number,
                        self.locator.install_path(), error.strerror or error)
            raise errors.codex_unavailable() from None
        finally:
            if child is not None:
                run.returncode = child.returncode  # reaped by now

    async def read_plan_limits(self) -> str | None:
        """Ask Codex for the ChatGPT plan's usage limits now (`GET /v1/usage?refresh`), into
        `plan_limits`; why it could not, for the client, or None. The child takes a slot like
        a run (it is as large as one) and lives in the caller's scope."""
        setup = await self.locator.get()
        if not setup.install.found or not setup.install.capabilities.app_server:
            return "this Codex CLI cannot read the plan's limits (it needs `codex app-server`)"
        # A shutdown starts no read, and stops one under way (its child with it), as it does
        # runs; what was known of the limits is still answered.
        with trio.CancelScope() as reading:
            if self.closing:
                return SHUTTING_DOWN
            self._plan_reads.add(reading)
            try:
                async with self._slot():
                    with self._run_folder() as directory:
                        try:
                            snapshots = await read_rate_limits(
                                setup, self.settings, directory / "child", self.locator.sentinel)
                        except RateLimitsUnreadable as error:
                            log.info("Codex could not read the plan's limits: %s",
                                     log_safe(str(error)))
                            return safe_for_client(
                                f"Codex could not read the plan's limits: {error}")
                        except OSError as error:
                            log.warning("could not start Codex to read the plan's limits: %s",
                                        error)
                            return "Codex could not be started to read the plan's limits."
            finally:
                self._plan_reads.discard(reading)
        if reading.cancelled_caught:
            return SHUTTING_DOWN
        for snapshot in snapshots:
            self.plan_limits.update(snapshot, time.time())
        return None

    def _assembler(self, request: ChatRequest) -> AnswerAssembler:
        return AnswerAssembler(
            stream_mode=self.settings.stream_mode,
            tool_required=bool(request.offered_tools)
            and request.tool_choice in ("required", "function"),
            parallel_tool_calls=request.parallel_tool_calls,
        )

    def _enter(self, run: Run) -> None:
        self.active.add(run)
        self._idle = trio.Event() if self._idle.is_set() else self._idle

    def _leave(self, run: Run) -> None:
        self.active.discard(run)
        if not self.active:
            self._idle.set()


def _storage_error(error: OSError, directory: str) -> errors.ApiError:
    """A 503 for a scratch folder or file that could not be written (ENOSPC, EDQUOT, EROFS,
    ...): the proxy's machine, not the request. The log has the folder; the client, only the
    system's reason."""
    log.warning("cannot write a run's files in %s: %s", directory, error)
    return errors.storage_unavailable(error.strerror or type(error).__name__)


def split_output(output: Output) -> Iterator[Output]:
    """`output`, a long text cut into pieces of at most MAX_OUTPUT_CHARS characters, each cut
    as it is needed (not all at once: that would be a second copy of the text)."""
    if isinstance(output, Content | Reasoning) and len(output.text) > MAX_OUTPUT_CHARS:
        for start in range(0, len(output.text), MAX_OUTPUT_CHARS):
            yield type(output)(output.text[start:start + MAX_OUTPUT_CHARS])
    else:
        yield output
