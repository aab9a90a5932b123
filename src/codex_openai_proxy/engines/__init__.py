"""The engine boundary: the ways of running Codex for one request, behind one small protocol.

`runs.py` owns what every run shares: a slot, the queue, the deadline, the child's process
group and its lifetime. An engine owns what is particular to one way of running Codex: the
command line, the conversation with the child (a sans-I/O protocol session from
`exec_protocol.py` or `app_server_protocol.py`) and the loop that feeds the session what the
child prints. The arrows run one way: runs -> engines -> protocol -> events; an engine never
sees the run, only the child and an `EventSink` to hand the run's events to.

    run = prepare_run(request, install, settings, workspace)   # argv and plan, no I/O
    async with spawn_child(run.launch(workspace), ...) as child:  # runs.py (or a warm spare)
        await run.drive(child, sink)                               # the engine's loop

Engines:

* `exec` (`engines/exec.py`): `codex exec --json`, the prompt as a transcript on stdin; each
  agent message arrives whole.
* `app-server` (`engines/app_server.py`): `codex app-server`, one JSON-RPC turn over stdio;
  text arrives token by token, and client tools are Codex dynamic tools. The default, and the
  only engine that takes tools.
"""

from __future__ import annotations

from pathlib import Path

from .. import errors
from ..chat_request import ChatRequest
from ..child import Sentinel
from ..codex_cli import CodexCapabilities
from ..codex_setup import CodexSetup
from ..settings import EngineName, Settings
from . import app_server
from .app_server import AppServerRun
from .base import EngineRun, EventSink, SpareLauncher, Workspace
from .exec import ExecRun

__all__ = ["EngineRun", "EventSink", "SpareLauncher", "Workspace", "choose_engine",
           "prepare_run", "seed_home", "spare_launcher"]


def choose_engine(settings: Settings, capabilities: CodexCapabilities,
                  request: ChatRequest | None = None) -> EngineName:
    """The configured engine, or exec where this Codex build has no app-server.

    Requests with tools always run on app-server: only it takes client-defined tools.
    Raises a 400 for tools on a build without app-server.
    """
    if request is not None and request.tools:
        if not capabilities.app_server:
            raise errors.tools_unsupported(capabilities.version)
        return "app-server"
    if settings.engine == "app-server" and not capabilities.app_server:
        return "exec"
    return settings.engine


def prepare_run(request: ChatRequest, setup: CodexSetup, settings: Settings,
                workspace: Workspace) -> EngineRun:
    """The run of `request` on the engine that suits it, with Codex's setup captured now.

    Raises a 400 for a prompt over Codex's input limit on exec, which gives Codex the whole
    conversation as one input text (app-server gives it as history, and no input)."""
    if choose_engine(settings, setup.install.capabilities, request) == "exec":
        return ExecRun(request, setup, settings, workspace)
    return AppServerRun(request, setup, settings)


def _runs_start_app_servers(setup: CodexSetup, settings: Settings) -> bool:
    """Whether app-server is the engine most runs take (with CODEX_ENGINE=exec, only requests
    with tools run on it): only then are children prepared ahead of demand."""
    return setup.install.found and choose_engine(
        settings, setup.install.capabilities) == "app-server"


def spare_launcher(setup: CodexSetup, settings: Settings) -> SpareLauncher | None:
    """How to start warm spares for the runs to come, if they can use any: app-server
    children, when app-server is the engine most runs take."""
    if not _runs_start_app_servers(setup, settings):
        return None
    return app_server.spare_launcher(setup, settings)


async def seed_home(setup: CodexSetup, settings: Settings, directory: Path,
                    sentinel: Sentinel | None = None) -> Path | None:
    """The seed the children's Codex homes start from (`app_server.seed_home`), when
    app-server is the engine most runs take; None otherwise (they start from empty homes)."""
    if not _runs_start_app_servers(setup, settings):
        return None
    return await app_server.seed_home(setup, settings, directory, sentinel)
