"""Codex runs: one child per request, bounded in number, time and lifetime (I/O).

A request asks `RunManager.start(nursery, request)` for a run. `start` waits for a free slot
(in order, up to the queue timeout), spawns the child and returns a `Run` whose `outputs`
channel carries the answer (`answer.Output`s, ending with `Finished` or `Failed`).

Who owns what, and why:

* The runner task lives in the *request's* nursery (see `lifetime.py`), not in the handler and
  not in the response body generator. Trio forbids `yield` inside a cancel scope opened in a
  generator, and a body generator only runs while the client reads; a runner of its own keeps
  reading the child and enforcing the deadline even when the client has stalled.
* The outputs channel is unbounded for the same reason: the runner never waits for the client.
  An answer is at most what one Codex turn prints, so the buffer is bounded in practice.
* The run's deadline is a cancel scope around the child, counted from the child's start (time
  spent queued is bounded separately by the queue timeout). Its expiry ends the answer with a
  `timeout` error; the child is then stopped like any other (see `child.py`).
* When the request ends, whatever the reason (answer sent, client gone, server shutting down),
  its nursery is cancelled, which cancels the runner, whose `spawn_child` block stops the
  process group under a shield. Nothing depends on the client to clean up.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import trio

from .answer import AnswerAssembler, Failed, Finished, Output, codex_failure_error
from .app_server_protocol import AppServerSession, DynamicTool, TurnPlan, encode
from .chat_request import ChatRequest
from .child import Child, LineTooLong, spawn_child
from .codex_cli import (
    CLIENT_TOOLS_OVERRIDES,
    INSTALL_HINT,
    RunOptions,
    app_server_argv,
    exec_argv,
)
from .codex_events import CodexEvent, Notice, Usage, failure
from .codex_probe import CodexInstall, probe_codex
from .errors import ApiError, internal_error, invalid
from .exec_protocol import ExecJsonReader, PlainOutputReader
from .prompt import number_images, render_instructions, render_prompt
from .settings import Engine, Settings

log = logging.getLogger(__name__)

StopReason = Literal["disconnect", "shutdown"]
Outcome = Literal["ok", "failed", "timeout", "disconnect", "shutdown"]

#: Variables the child must not see: the proxy's own secret is none of Codex's business.
PRIVATE_ENV = ("PROXY_API_KEY",)

_run_numbers = itertools.count(1)


def shutting_down_error() -> ApiError:
    return ApiError(503, "The proxy is shutting down.", "api_error", None, "shutting_down",
                    {"x-should-retry": "false"})


def timeout_error(seconds: float) -> ApiError:
    return ApiError(
        504,
        f"Codex did not finish within PROXY_REQUEST_TIMEOUT_S ({seconds:g} s); the run was "
        "stopped.",
        "api_error", None, "timeout", {"x-should-retry": "false"},
    )


def queue_full_error(settings: Settings) -> ApiError:
    # Retrying is the right move here: a slot will free up. Retry-After says when to try.
    return ApiError(
        429,
        f"All {settings.max_concurrent} Codex slots stayed busy for "
        f"{settings.queue_timeout_s:g} s (PROXY_MAX_CONCURRENT, PROXY_QUEUE_TIMEOUT_S). "
        "Try again shortly.",
        "rate_limit_exceeded", None, "too_many_concurrent_runs",
        {"retry-after": str(max(1, round(settings.queue_timeout_s / 2)))},
    )


def codex_unavailable_error(problem: str) -> ApiError:
    return ApiError(503, problem, "api_error", None, "codex_not_found",
                    {"x-should-retry": "false"})


@dataclass(eq=False)
class Run:
    """One Codex run, as the web layer sees it."""

    number: int
    request: ChatRequest
    outputs: trio.MemoryReceiveChannel[Output]
    started_at: float = field(default_factory=time.monotonic)
    pid: int | None = None
    stop_reason: StopReason | None = None
    returncode: int | None = None
    outcome: Outcome | None = None  # set when the answer (or its error) is handed over
    engine: Engine | None = None
    usage: Usage | None = None
    _cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    @property
    def end_reason(self) -> str:
        """How the child ended, for the request's log line and the metrics."""
        if self.outcome in ("ok", "failed"):
            return self.outcome
        # Anything else was ended from outside: the deadline, the shutdown, or (unanswered,
        # with no other reason) the client leaving.
        return f"killed_on_{self.outcome or self.stop_reason or 'disconnect'}"

    def stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._cancel_scope.cancel()


class CodexLocator:
    """The Codex install, probed at start-up and again while it is missing.

    A proxy started before Codex was installed (or logged in) must start working once it is,
    without a restart, so a missing Codex is looked for again on each request.
    """

    def __init__(self, settings: Settings, env: Mapping[str, str]) -> None:
        self._settings = settings
        #: The environment every Codex process gets (probes included): the proxy's own.
        self.env = {k: v for k, v in env.items() if k not in PRIVATE_ENV}
        self.install: CodexInstall | None = None
        self._lock = trio.Lock()

    async def get(self) -> CodexInstall:
        async with self._lock:
            if self.install is None or not self.install.found:
                self.install = await probe_codex(self._settings.codex_bin, self.env)
                if self.install.found:
                    log.info("using Codex %s at %s", self.install.capabilities.version,
                             self.install.path)
                else:
                    log.warning("%s", self.install.problem)
            return self.install

    def forget(self) -> None:
        self.install = None


class RunManager:
    def __init__(self, settings: Settings, locator: CodexLocator,
                 env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.locator = locator
        env = dict(os.environ if env is None else env)
        self._child_env = {k: v for k, v in env.items() if k not in PRIVATE_ENV}
        self._slots = trio.CapacityLimiter(settings.max_concurrent)
        self._queued: set[trio.CancelScope] = set()
        self._queue_changed = trio.Event()
        self.active: set[Run] = set()
        self.closing = False
        self._warned: set[str] = set()
        self._idle = trio.Event()
        self._idle.set()

    # -- the web layer's side ---------------------------------------------------------------

    async def start(self, nursery: trio.Nursery, request: ChatRequest) -> Run:
        """Queue for a slot, spawn Codex, and return the run; raises `ApiError` (429, 503)."""
        if self.closing:
            raise shutting_down_error()
        run: Run = await nursery.start(self._runner, request)
        return run

    def close(self) -> None:
        """Refuse new runs and stop every queued and running one (server shutdown)."""
        self.closing = True
        for scope in list(self._queued):
            scope.cancel()
        for run in list(self.active):
            run.stop("shutdown")

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
        slot = object()
        await self._wait_for_slot(slot)
        try:
            install = await self.locator.get()
            if not install.found:
                raise codex_unavailable_error(install.problem or "Codex is not available.")
            await self._run_child(request, install, task_status)
        finally:
            self._slots.release_on_behalf_of(slot)

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
            raise shutting_down_error()
        raise queue_full_error(self.settings)

    async def _run_child(
        self, request: ChatRequest, install: CodexInstall, task_status: trio.TaskStatus[Run]
    ) -> None:
        settings = self.settings
        send, receive = trio.open_memory_channel[Output](float("inf"))
        run = Run(next(_run_numbers), request, receive)
        scratch_dir = tempfile.mkdtemp(prefix="codex-openai-proxy-")
        child: Child | None = None
        # Active from before the spawn until after the reap and the cleanup, so that
        # `close()` reaches it at any point and `wait_idle()` means "nothing left behind".
        self._enter(run)
        try:
            run.engine = self.engine_for(install, request)
            argv, prompt, drive = self._launch(run, install, scratch_dir)
            if settings.log_bodies:
                log.debug("run %d prompt:\n%s", run.number, prompt)
            # Plain `async with`, not an AsyncExitStack: a run ends with a Cancelled passing
            # through here (the request's nursery stops the child once the answer is out), and
            # AsyncExitStack re-raises it from a frame that keeps it, a reference cycle that
            # held each finished run (frames, tasks, pipes: ~250 objects) until a full garbage
            # collection, which then stalled every stream at once (~100 ms at 64 streams; see
            # docs/benchmarks.md).
            try:
                async with spawn_child(argv, cwd=scratch_dir, env=self._child_env,
                                       kill_grace_s=settings.kill_grace_s) as child, send:
                    run.pid = child.pid
                    run._cancel_scope.deadline = trio.current_time() + settings.request_timeout_s
                    task_status.started(run)
                    with run._cancel_scope:
                        try:
                            await drive(child, send)
                        except LineTooLong as error:
                            self._answer(run, send,
                                         Failed(codex_failure_error(failure(str(error)))),
                                         "failed")
                        except Exception:
                            # A bug here must not take the request's nursery (and the response)
                            # down with it: the client gets an error, the child is still stopped.
                            log.exception("run %d failed inside the proxy", run.number)
                            self._answer(run, send, Failed(internal_error("the run failed")),
                                         "failed")
                    if run._cancel_scope.cancelled_caught and run.outcome is None:
                        if run.stop_reason == "shutdown":
                            self._answer(run, send, Failed(shutting_down_error()), "shutdown")
                        else:
                            self._answer(run, send,
                                         Failed(timeout_error(settings.request_timeout_s)),
                                         "timeout")
            except OSError as error:
                if child is not None:
                    raise  # Codex did start: this is no failure to start it
                self.locator.forget()
                raise codex_unavailable_error(
                    f"Could not start the Codex CLI {argv[0]!r}: {error.strerror or error}. "
                    f"{INSTALL_HINT}"
                ) from None
        finally:
            shutil.rmtree(scratch_dir, ignore_errors=True)
            if child is not None:
                run.returncode = child.process.returncode  # reaped by now
            if run.pid is not None:
                log.debug("run %d pid=%s ended: %s, exit %s, after %.2fs", run.number, run.pid,
                          run.end_reason, run.returncode, time.monotonic() - run.started_at)
            self._leave(run)

    def _launch(self, run: Run, install: CodexInstall, scratch_dir: str) -> tuple[
        list[str], str, Callable[[Child, trio.MemorySendChannel[Output]], Awaitable[None]]
    ]:
        """The run's argv, its prompt, and the coroutine that talks to its child."""
        request = run.request
        options = self._options(request, scratch_dir)
        codex_bin = install.path or self.settings.codex_bin
        if run.engine == "exec":
            prompt = render_prompt(request.messages)
            return (exec_argv(codex_bin, install.capabilities, options), prompt,
                    partial(self._drive_exec, run, prompt=prompt))
        instructions = render_instructions(request.messages) or None
        plan = TurnPlan(
            prompt=render_prompt(request.messages, system_in_prompt=False),
            cwd=scratch_dir, model=options.model, effort=options.reasoning_effort,
            # A client with tools of its own (Roo Code) is the agent; its system prompt
            # replaces Codex's, which describes tools that are switched off for it.
            base_instructions=(instructions or "") if request.tools else None,
            developer_instructions=None if request.tools else instructions,
            image_paths=options.image_paths,
            tools=[DynamicTool(tool.name, tool.description, tool.parameters)
                   for tool in request.offered_tools],
        )
        return (app_server_argv(codex_bin, options), plan.prompt,
                partial(self._drive_app_server, run, plan=plan))

    @staticmethod
    def _answer(run: Run, send: trio.MemorySendChannel[Output], output: Output,
                outcome: Outcome) -> None:
        if run.outcome is None:  # one answer per run, whatever happens after it
            run.outcome = outcome
            if isinstance(output, Finished):
                run.usage = output.usage
            # A reader that has gone (its request ended) no longer needs the answer.
            with contextlib.suppress(trio.BrokenResourceError):
                send.send_nowait(output)

    def _log_notice(self, run: Run, notice: Notice) -> None:
        # Codex's warnings (e.g. "Model metadata for `gpt-5` not found") repeat on every run:
        # worth one line in the log, not one per request. Everything else is debug detail.
        if notice.kind == "warning" and notice.detail not in self._warned:
            self._warned.add(notice.detail)
            log.warning("Codex says: %s", notice.detail)
        else:
            log.debug("run %d %s: %s", run.number, notice.kind, notice.detail)

    def engine_for(self, install: CodexInstall, request: ChatRequest | None = None) -> Engine:
        """The configured engine, or exec where this Codex build has no app-server.

        Requests with tools always run on app-server: only it takes client-defined tools.
        """
        if request is not None and request.tools:
            if not install.capabilities.app_server:
                raise invalid(
                    "Tool calling needs `codex app-server`, which this Codex build "
                    f"({install.capabilities.version or 'unknown version'}) does not have.",
                    "tools", "tools_unsupported")
            return "app-server"
        if self.settings.engine == "app-server" and not install.capabilities.app_server:
            return "exec"
        return self.settings.engine

    def _options(self, request: ChatRequest, scratch_dir: str) -> RunOptions:
        image_paths = []
        for numbered in number_images(request.messages):
            path = os.path.join(scratch_dir, numbered.filename)
            with open(path, "wb") as file:
                file.write(numbered.image.data)
            image_paths.append(path)
        codex_model = request.codex_model or request.model
        model = None if codex_model == "default" else codex_model
        return RunOptions(
            model=model,
            reasoning_effort=request.reasoning_effort,
            login_method=self.settings.codex_login_method,
            scratch_dir=scratch_dir,
            image_paths=tuple(image_paths),
            config_overrides=CLIENT_TOOLS_OVERRIDES if request.tools else (),
        )

    def _deliverer(
        self, run: Run, send: trio.MemorySendChannel[Output]
    ) -> tuple[AnswerAssembler, Callable[[list[CodexEvent]], None]]:
        """The answer policy for a run, and a function that hands its outputs to the client."""
        request = run.request
        assembler = AnswerAssembler(
            stream_mode=self.settings.stream_mode,
            tool_required=bool(request.offered_tools)
            and request.tool_choice in ("required", "function"),
            parallel_tool_calls=request.parallel_tool_calls,
        )

        def deliver(events: list[CodexEvent]) -> None:
            for event in events:
                if isinstance(event, Notice):
                    self._log_notice(run, event)
                    continue
                for output in assembler.feed(event):
                    if isinstance(output, Finished):
                        self._answer(run, send, output, "ok")
                    elif isinstance(output, Failed):
                        self._answer(run, send, output, "failed")
                    else:
                        with contextlib.suppress(trio.BrokenResourceError):
                            send.send_nowait(output)

        return assembler, deliver

    async def _drive_app_server(
        self,
        run: Run,
        child: Child,
        send: trio.MemorySendChannel[Output],
        *,
        plan: TurnPlan,
    ) -> None:
        """Hold the JSON-RPC conversation for one turn; relay its deltas as they come."""
        session = AppServerSession(plan)
        assembler, deliver = self._deliverer(run, send)

        async def write(messages: list[dict[str, Any]]) -> None:
            for message in messages:
                await child.send(encode(message))

        try:
            await write(session.start())
            while not assembler.ended and (line := await child.read_line()) is not None:
                outgoing, events = session.feed(line)
                await write(outgoing)
                deliver(events)
            if not assembler.ended:
                deliver(session.finish(await child.wait_exit(), child.stderr_tail()))
        finally:
            # However the turn ends (answered, failed, client gone, deadline, shutdown), ask
            # Codex to stop it first; Codex then cancels its own work in order. Shielded and
            # bounded: the signals in `spawn_child` follow regardless.
            with trio.CancelScope(shield=True), \
                    trio.move_on_after(min(1.0, self.settings.kill_grace_s)):
                if interrupt := session.interrupt():
                    await write(interrupt)
                    while not session.finished and (line := await child.read_line()) is not None:
                        session.feed(line)
            # The app-server serves until its stdin closes: closing it lets Codex exit by
            # itself, before the stop in `spawn_child` has to signal it.
            with trio.CancelScope(shield=True):
                await child.close_stdin()
        if assembler.ended:
            with trio.move_on_after(self.settings.kill_grace_s):
                await child.wait_exit()

    async def _drive_exec(
        self,
        run: Run,
        child: Child,
        send: trio.MemorySendChannel[Output],
        *,
        prompt: str,
    ) -> None:
        """Feed the prompt and translate stdout until the answer ends."""
        await child.send(prompt.encode("utf-8"))
        await child.close_stdin()
        install = self.locator.install
        json_events = install is None or install.capabilities.json_events
        reader = ExecJsonReader() if json_events else PlainOutputReader()
        assembler, deliver = self._deliverer(run, send)

        while not assembler.ended and (line := await child.read_line()) is not None:
            deliver(reader.feed(line))
        if assembler.ended:
            # Codex exits by itself right after the turn; give it the kill grace to do so
            # before the stop in `spawn_child` signals it.
            with trio.move_on_after(self.settings.kill_grace_s):
                await child.wait_exit()
            return
        returncode = await child.wait_exit()
        deliver(reader.finish(returncode, child.stderr_tail()))

    def _enter(self, run: Run) -> None:
        self.active.add(run)
        self._idle = trio.Event() if self._idle.is_set() else self._idle

    def _leave(self, run: Run) -> None:
        self.active.discard(run)
        if not self.active:
            self._idle.set()
