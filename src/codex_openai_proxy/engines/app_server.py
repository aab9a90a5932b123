"""The app-server engine: `codex app-server`, one JSON-RPC turn over stdio.

Codex reports each piece of text as the model writes it, and takes the client's tools as
dynamic tools. The conversation itself (what to send, what each line means) is
`AppServerSession`'s; this module runs it against the child: it writes what the session says
to write, feeds it every stdout line, and hands the events to the sink.

However the turn ends (answered, failed, client gone, deadline, shutdown), the driver asks
Codex to interrupt the turn, so that Codex cancels its own work in order, then closes stdin so
that the app-server exits by itself. Both are shielded and bounded: the child's owner signals
the process group regardless.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import trio

from ..app_server_protocol import AppServerSession, DynamicTool, TurnPlan, encode
from ..chat_request import ChatRequest
from ..child import Child
from ..codex_cli import config_args, login_overrides
from ..codex_probe import CodexInstall
from ..prompt import render_instructions, render_prompt
from ..settings import EngineName, Settings
from .base import EventSink, Workspace

#: The longest the driver waits for Codex to confirm an interrupt before leaving the child to
#: the signals.
INTERRUPT_WAIT_S = 1.0

#: `-c` overrides for requests that bring tools of their own (Roo Code and other agents): the
#: client is the agent, so the model must choose among the client's tools only, or it would
#: run shell commands, search the web or spawn agents where the client expects a call that it
#: executes itself; and Codex's notes on its sandbox, its skills and its working directory
#: (an empty scratch folder) would only mislead it.
#: Checked on codex-cli 0.169.0 against the mock upstream with `-m gpt-5`: without them the
#: model is offered exec_command, write_stdin, request_user_input, view_image, multi_agent_v1,
#: get_goal, create_goal, update_goal and web_search beside the client's tools, and given the
#: skills, permissions and environment context; with them, the client's tools and messages
#: alone. (Models whose catalog entry selects Codex's JavaScript "code mode" still get Codex's
#: `exec`/`wait` wrapper and its collaboration tools; see the README.)
CLIENT_TOOLS_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("features.shell_tool", "false"),
    ("features.unified_exec", "false"),
    ("web_search", '"disabled"'),
    ("features.multi_agent", "false"),
    ("features.multi_agent_v2", "false"),
    ("features.goals", "false"),
    ("features.view_image", "false"),
    ("features.sleep_tool", "false"),
    ("tools.experimental_request_user_input.enabled", "false"),
    ("include_permissions_instructions", "false"),
    ("include_environment_context", "false"),
    ("skills.include_instructions", "false"),
)


def app_server_argv(codex_bin: str, *, login_method: str,
                    overrides: Sequence[tuple[str, str]] = ()) -> list[str]:
    """`codex app-server` over stdio; model, effort and tools travel in the JSON-RPC calls."""
    return [codex_bin, "app-server", *config_args([*overrides, *login_overrides(login_method)])]


def turn_plan(request: ChatRequest, workspace: Workspace) -> TurnPlan:
    """What the turn asks of Codex, from the request."""
    instructions = render_instructions(request.messages) or None
    conversation = [m for m in request.messages if m.role not in ("system", "developer")]
    return TurnPlan(
        prompt=render_prompt(conversation),
        cwd=workspace.directory,
        model=request.codex_model_arg,
        effort=request.reasoning_effort,
        # A client with tools of its own (Roo Code) is the agent; its system prompt replaces
        # Codex's, which describes tools that are switched off for it.
        base_instructions=(instructions or "") if request.tools else None,
        developer_instructions=None if request.tools else instructions,
        image_paths=workspace.image_paths,
        tools=[DynamicTool(tool.name, tool.description, tool.parameters)
               for tool in request.offered_tools],
    )


class AppServerRun:
    engine: EngineName = "app-server"

    def __init__(self, request: ChatRequest, install: CodexInstall, settings: Settings,
                 workspace: Workspace) -> None:
        self.plan = turn_plan(request, workspace)
        self.argv = app_server_argv(
            install.path or settings.codex_bin, login_method=settings.codex_login_method,
            overrides=CLIENT_TOOLS_OVERRIDES if request.tools else ())
        self._interrupt_wait_s = min(INTERRUPT_WAIT_S, settings.kill_grace_s)
        self._reply_timeout_s = settings.reply_timeout_s

    def describe_input(self) -> str:
        return "\n\n".join(filter(None, (self.plan.base_instructions,
                                         self.plan.developer_instructions, self.plan.prompt)))

    async def drive(self, child: Child, sink: EventSink) -> None:
        """Hold the JSON-RPC conversation for one turn; relay its events as they come."""
        session = AppServerSession(self.plan)

        async def write(messages: list[dict[str, Any]]) -> None:
            for message in messages:
                await child.send(encode(message))

        try:
            await write(session.start())
            phase, reply_deadline = None, math.inf
            while not sink.answered:
                # Each step of the handshake gets its own deadline, from the moment it was
                # asked: a child that stops answering (Codex stalls on some inputs) fails the
                # run at once instead of holding its slot until the request's deadline.
                if session.phase is not phase:
                    phase = session.phase
                    reply_deadline = (trio.current_time() + self._reply_timeout_s
                                      if session.awaiting else math.inf)
                with trio.move_on_at(reply_deadline):
                    line = await child.read_line()
                    if line is None:
                        break
                    outgoing, events = session.feed(line)
                    del line  # a long line is not kept while the client takes its time over it
                    await write(outgoing)
                    await sink.deliver(events)
                    continue
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
