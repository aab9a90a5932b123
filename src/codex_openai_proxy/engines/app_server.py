"""The app-server engine: `codex app-server`, one JSON-RPC turn over stdio, lean and native.

What the model sees is what the client sent, and nothing of Codex's own agent:

* Codex is started lean (`LEAN_OVERRIDES`, and the proxy's model catalog, see
  `catalog.lean_catalog`): none of its tools (shell, apply_patch, web search, image viewer,
  sub-agents, goals, user prompts, its JavaScript code mode, MCP servers from the user's
  config), none of its instructions (collaboration mode, permissions, skills, apps,
  environment context). Only the client's tools are offered, as plain function tools under the
  client's own names.
* The conversation is native Responses items (`native_history.py`), written as the history of
  a rollout file for the conversation's own id (`rollout.py`) in the child's own Codex home
  (`codex_setup.py`), which the turn resumes: one prompt cache key per conversation, and each
  request's input extends the previous one's.

The conversation with the child (what to send, what each line means) is `AppServerSession`'s;
this module runs it: it writes what the session says to write, feeds it every stdout line and,
while a tool call is out, the rollout file's new lines, and hands the events to the sink.

However the turn ends (answered, failed, client gone, deadline, shutdown), the driver asks
Codex to interrupt the turn, so that Codex cancels its own work in order, then closes stdin so
that the app-server exits by itself. Both are shielded and bounded: the child's owner signals
the process group regardless.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import Hashable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import trio

from ..app_server_protocol import (
    INITIALIZED,
    AppServerSession,
    DynamicTool,
    TurnPlan,
    encode,
    initialize_outcome,
    initialize_request,
    rate_limits_read_outcome,
    rate_limits_read_request,
)
from ..chat_request import ChatRequest
from ..child import Child, ChildLaunch, Sentinel, spawn_child
from ..codex_cli import config_args, login_overrides, toml_string
from ..codex_setup import CodexSetup, make_child_home
from ..native_history import codex_tool_names, conversation_id, native_conversation
from ..rollout import rollout_path, rollout_text
from ..settings import EngineName, Settings
from .base import EventSink, SpareLauncher, Workspace

log = logging.getLogger(__name__)

#: The longest the driver waits for Codex to confirm an interrupt before leaving the child to
#: the signals.
INTERRUPT_WAIT_S = 1.0
#: How often the rollout file is read while a tool call is out: the end of the model's
#: response is written there 3-10 ms after it happens.
ROLLOUT_POLL_S = 0.01
#: How long the rollout file may take to say that the response has ended, once a tool call is
#: out, before the answer ends without it.
ROLLOUT_GRACE_S = 2.0

#: `-c` overrides that keep Codex's own agent out of the model's request. Each was checked on
#: codex-cli 0.169.0 against the mock upstream (on gpt-6.1-sol, gpt-5.5 and gpt-5, with and
#: without a ChatGPT login): left out, it puts a tool or a message of Codex's back. With them
#: and the lean catalog, a plain request goes up as ~1.7 KB instead of ~40-55 KB.
LEAN_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("features.shell_tool", "false"),
    ("features.view_image", "false"),
    ("features.goals", "false"),
    ("features.multi_agent", "false"),
    ("features.apps", "false"),  # ChatGPT logins: the codex_apps MCP resource tools
    ("features.image_generation", "false"),  # ChatGPT logins: image_gen
    ("web_search", '"disabled"'),
    ("tools.experimental_request_user_input.enabled", "false"),
    ("skills.include_instructions", "false"),
    ("include_environment_context", "false"),
    ("include_permissions_instructions", "false"),
    ("include_collaboration_mode_instructions", "false"),
    # Work Codex does for each process or thread that a proxy never needs, each checked on
    # 0.169.0 with strace and the mock's request log (see the README, "A lean Codex"): a
    # login-shell snapshot (`bash -lc` of the user's ~/.bashrc, per thread; ~50-250 ms of
    # CPU), the plugin sync (`git ls-remote` of openai/plugins, then GitHub's and ChatGPT's
    # APIs, per process), tool suggestions, analytics events, installing the bundled skills,
    # feedback log capture, memories, the user's hooks and notify program (they would fire
    # on every API request), telemetry export, history.jsonl, the update check, and
    # AGENTS.md project docs (the working folder is empty anyway).
    ("features.shell_snapshot", "false"),
    ("features.plugins", "false"),
    ("features.tool_suggest", "false"),
    ("analytics.enabled", "false"),
    ("skills.bundled.enabled", "false"),
    ("feedback.enabled", "false"),
    ("features.memories", "false"),
    ("features.hooks", "false"),
    ("notify", "[]"),
    ("otel.exporter", '"none"'),
    ("otel.trace_exporter", '"none"'),
    ("otel.metrics_exporter", '"none"'),
    ("history.persistence", '"none"'),
    ("check_for_update_on_startup", "false"),
    ("project_doc_max_bytes", "0"),
)

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def app_server_argv(codex_bin: str, *, login_method: str,
                    overrides: Sequence[tuple[str, str]] = ()) -> list[str]:
    """`codex app-server` over stdio; model, effort and tools travel in the JSON-RPC calls."""
    return [codex_bin, "app-server", *config_args([*overrides, *login_overrides(login_method)])]


def lean_overrides(setup: CodexSetup,
                   settings_overrides: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Everything `codex app-server` is started with, for any request: the argv does not
    depend on the request, so a child can be started before one arrives."""
    overrides = list(LEAN_OVERRIDES)
    if setup.catalog_path is not None:
        overrides.append(("model_catalog_json", toml_string(str(setup.catalog_path))))
    for name in setup.user_home.mcp_servers:
        # The user's MCP servers would add their tools (and a tool-search tool) to every
        # request; `-c mcp_servers={}` does not remove them, switching each off does.
        if _BARE_KEY.match(name):
            overrides.append((f"mcp_servers.{name}.enabled", "false"))
        else:
            log.warning("cannot switch off the MCP server %r for Codex runs: its name needs "
                        "quoting", name)
    # The operator's own, last: a later override of a key wins.
    return overrides + [tuple(item.split("=", 1)) for item in settings_overrides]


def launch_key(setup: CodexSetup, settings: Settings) -> Hashable:
    """What a child's start depends on: children started with equal keys are interchangeable
    (and a spare serves only a run with its key). The catalog's generation is part of it, so
    spares started before a SIGHUP never serve a run after it."""
    return (tuple(app_server_argv(setup.install.path or settings.codex_bin,
                                  login_method=settings.codex_login_method,
                                  overrides=lean_overrides(setup, settings.codex_config))),
            tuple(sorted(setup.env.items())), setup.user_home, setup.generation)


def child_launch(setup: CodexSetup, settings: Settings, directory: Path) -> ChildLaunch:
    """How an app-server child starts, whatever it will serve: in `directory` (made here, and
    the caller's to remove), its empty working folder and its own Codex home. Nothing in it
    depends on a request, so a child can be started before one arrives."""
    directory.mkdir(mode=0o700)
    work = directory / "work"
    work.mkdir()
    if setup.user_home.keyring_login:
        # A keyring login is only found from the user's own home (see codex_setup.py).
        home = setup.user_home.path
    else:
        home = make_child_home(setup.user_home, directory / "codex-home", setup.seed_home)
    argv = app_server_argv(setup.install.path or settings.codex_bin,
                           login_method=settings.codex_login_method,
                           overrides=lean_overrides(setup, settings.codex_config))
    return ChildLaunch(tuple(argv), work, {**setup.env, "CODEX_HOME": str(home)})


async def warm_up(child: Child) -> None:
    """`initialize` a child ahead of demand (a warm spare): a run then starts at its thread."""
    await child.send(encode(initialize_request()))
    while (line := await child.read_line()) is not None:
        outcome = initialize_outcome(line)
        if outcome == "ok":
            await child.send(encode(INITIALIZED))
            child.warmed = True
            return
        if outcome is not None:
            raise WarmUpFailed(f"Codex app-server refused initialize: {outcome}")
    raise WarmUpFailed(f"Codex app-server exited during initialize: {child.stderr_tail()[-300:]}")


class WarmUpFailed(Exception):
    pass


async def seed_home(setup: CodexSetup, settings: Settings, directory: Path,
                    sentinel: Sentinel | None = None) -> Path | None:
    """Start one child in a home of its own, `initialize` it and let it exit: its databases,
    created and migrated, are the seed every child's home starts from. None (children then
    start from empty homes) if that fails; the log says why."""
    if setup.user_home.keyring_login or not setup.install.found:
        return None  # children run in the user's own home, which has its databases
    # The seed's folder outlives the seed: it is what the children copy.
    launch = child_launch(setup, settings, directory)
    try:
        with trio.fail_after(settings.reply_timeout_s):
            async with spawn_child(launch, kill_grace_s=settings.kill_grace_s,
                                   sentinel=sentinel) as child:
                await warm_up(child)
                await child.close_stdin()  # the app-server exits, its databases closed
                await child.wait_exit()
    except (OSError, trio.TooSlowError, WarmUpFailed) as error:
        log.warning("Codex children start from empty homes (%s)", error)
        return None
    return Path(launch.env["CODEX_HOME"])


async def read_rate_limits(setup: CodexSetup, settings: Settings, directory: Path,
                           sentinel: Sentinel | None = None) -> list[Any]:
    """The ChatGPT plan's usage limits as Codex reads them from the backend now: one child,
    started lean, asked `account/rateLimits/read` and nothing else, stopped whatever happens
    (it lives in this task's scope, as a run's child does). Raises `RateLimitsUnreadable`."""
    launch = child_launch(setup, settings, directory)
    try:
        with trio.fail_after(settings.reply_timeout_s):
            async with spawn_child(launch, kill_grace_s=settings.kill_grace_s,
                                   sentinel=sentinel) as child:
                await warm_up(child)
                await child.send(encode(rate_limits_read_request()))
                while (line := await child.read_line()) is not None:
                    if (answer := rate_limits_read_outcome(line)) is not None:
                        snapshots, reason = answer
                        if reason is not None:
                            raise RateLimitsUnreadable(reason)
                        return snapshots
                raise RateLimitsUnreadable("Codex app-server exited before it answered")
    except trio.TooSlowError:
        raise RateLimitsUnreadable(f"Codex did not answer within {settings.reply_timeout_s:g} "
                                   "s") from None
    except WarmUpFailed as error:
        raise RateLimitsUnreadable(str(error)) from None


class RateLimitsUnreadable(Exception):
    pass


def spare_launcher(setup: CodexSetup, settings: Settings) -> SpareLauncher:
    return SpareLauncher(key=launch_key(setup, settings),
                         launch=partial(_spare_launch, setup, settings), warm_up=warm_up)


def _spare_launch(setup: CodexSetup, settings: Settings, directory: Path) -> ChildLaunch:
    # A spare's folder is nobody else's: it goes with the child.
    return dataclasses.replace(child_launch(setup, settings, directory), owned_dir=directory)


class AppServerRun:
    engine: EngineName = "app-server"

    def __init__(self, request: ChatRequest, setup: CodexSetup, settings: Settings) -> None:
        self._setup = setup
        self._settings = settings
        self._request = request
        renamed = codex_tool_names(tool.name for tool in request.offered_tools)
        self._input = native_conversation(request.messages, renamed)
        self._tools = [DynamicTool(renamed.get(tool.name, tool.name), tool.description,
                                   tool.parameters, client_name=tool.name)
                       for tool in request.offered_tools]
        self._thread_id = conversation_id(request.messages, request.cache_key)
        self.spare_key = launch_key(setup, settings)
        self._leftover: Path | None = None
        self._interrupt_wait_s = min(INTERRUPT_WAIT_S, settings.kill_grace_s)
        self._reply_timeout_s = settings.reply_timeout_s

    def launch(self, workspace: Workspace) -> ChildLaunch:
        # In the workspace, which goes with the run.
        return child_launch(self._setup, self._settings, workspace.private / "child")

    def describe_input(self) -> str:
        return f"instructions:\n{self._input.instructions}\nitems:\n{self._input.items}"

    def release(self) -> None:
        if self._leftover is not None:
            self._leftover.unlink(missing_ok=True)

    def _write_rollout(self, child: Child) -> tuple[TurnPlan, Path, int]:
        """The turn's plan, and the conversation's rollout file in the child's Codex home."""
        request, cwd = self._request, str(child.launch.cwd)
        summary = request.reasoning_summary or self._settings.reasoning_summary
        plan = TurnPlan(
            thread_id=self._thread_id, cwd=cwd, model=request.codex_model_arg,
            effort=request.reasoning_effort, summary=None if summary == "none" else summary,
            output_schema=request.output_schema, tools=self._tools)
        text = rollout_text(
            self._thread_id, timestamp=_now_iso(), cwd=cwd, model=request.codex_model_arg,
            model_provider=self._setup.user_home.model_provider,
            instructions=self._input.instructions,
            dynamic_tools=[{"type": "function", "name": tool.name,
                            "description": tool.description, "inputSchema": tool.input_schema}
                           for tool in self._tools],
            history=self._input.items,
            cli_version=self._setup.install.capabilities.version or "0.0.0",
        )
        path = Path(child.launch.env["CODEX_HOME"]) / rollout_path(self._thread_id)
        if self._setup.user_home.keyring_login:
            self._leftover = path  # in the user's own home: it must go after the run
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode("utf-8")
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(path)
        return plan, path, len(data)

    async def drive(self, child: Child, sink: EventSink) -> None:
        """Hold the JSON-RPC conversation for one turn; relay its events as they come."""
        # In a thread: the conversation, images and all, can be tens of megabytes to serialize
        # and write, and every other stream would wait on the event loop meanwhile.
        plan, rollout_file, written = await trio.to_thread.run_sync(self._write_rollout, child)
        session = AppServerSession(plan)
        rollout = RolloutTail(rollout_file, written)

        async def write(messages: list[dict[str, Any]]) -> None:
            for message in messages:
                await child.send(encode(message))

        try:
            await write(session.start(initialized=child.warmed))
            phase, reply_deadline, rollout_deadline = None, math.inf, math.inf
            while not sink.answered:
                # Each step of the handshake gets its own deadline, from the moment it was
                # asked: a child that stops answering (Codex stalls on some inputs) fails the
                # run at once instead of holding its slot until the request's deadline.
                if session.phase is not phase:
                    phase = session.phase
                    reply_deadline = (trio.current_time() + self._reply_timeout_s
                                      if session.awaiting else math.inf)
                if session.reading_rollout and rollout_deadline == math.inf:
                    rollout_deadline = trio.current_time() + ROLLOUT_GRACE_S
                wake = reply_deadline
                if session.reading_rollout:
                    wake = min(wake, trio.current_time() + ROLLOUT_POLL_S)
                # Only the wait for a line is bounded: what the line brings is written to Codex
                # and handed to the client whole, however long the client takes over it.
                with trio.move_on_at(wake) as waiting:
                    line = await child.read_line()
                if not waiting.cancelled_caught:
                    if line is None:
                        break
                    outgoing, events = session.feed(line)
                    del line  # a long line is not kept while the client takes its time over it
                    await write(outgoing)
                    await sink.deliver(events)
                if session.reading_rollout:
                    for record in rollout.new_lines():
                        await sink.deliver(session.feed_rollout(record))
                    if trio.current_time() >= rollout_deadline and not sink.answered:
                        log.warning("Codex's rollout file did not show the end of the model's "
                                    "response within %g s; the tool calls go out without it",
                                    ROLLOUT_GRACE_S)
                        await sink.deliver(session.rollout_overdue())
                # The deadline is the awaited step's: once a line has moved the session on,
                # the next step's is set at the top of the loop.
                if session.phase is phase and trio.current_time() >= reply_deadline \
                        and not sink.answered:
                    if not (failure := session.give_up(self._reply_timeout_s)):
                        break
                    await sink.deliver(failure)
            if not sink.answered:
                await sink.deliver(session.finish(await child.wait_exit(), child.stderr_tail()))
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self._interrupt_wait_s):
                if interrupt := session.interrupt():
                    await write(interrupt)
                    while not session.finished and (line := await child.read_line()) is not None:
                        session.feed(line)
            # The app-server serves until its stdin closes: closing it lets Codex exit by
            # itself, before the owner has to signal it.
            with trio.CancelScope(shield=True):
                await child.close_stdin()


class RolloutTail:
    """The lines Codex appends to a rollout file, from where the proxy's own lines end."""

    def __init__(self, path: Path, offset: int) -> None:
        self._path = path
        self._offset = offset
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self._path.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except OSError:
            return []
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete if line]


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

