"""Serving the app with hypercorn's trio worker, and stopping it cleanly and in bounded time.

Hypercorn's `serve` is run directly (not its CLI) so that the proxy owns shutdown: SIGTERM or
SIGINT stops the listener and, at the same moment, stops every queued and running Codex run,
whose streams then end with a `shutting_down` error. Every child is stopped within the kill
grace (then SIGKILL). Clients get `SHUTDOWN_SLACK_S` more to take the end of their streams;
whoever is still connected then (a client that reads nothing blocks hypercorn's shielded
writes, which no cancellation reaches) is disconnected (`connections.py`). So the proxy exits
`shutdown_bound_s` after the signal at the latest, whatever its clients do, and by the time
`serve_proxy` returns every child has been reaped.

The signal receiver stays open until then: trio restores the default handlers when it closes,
and the default action of SIGTERM, SIGINT and SIGHUP is to end the process on the spot, its
children unreaped. A second signal during the shutdown (an impatient Ctrl-C, `systemctl
reload`) is logged and the shutdown carries on.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import hypercorn.trio
import hypercorn.trio.tcp_server
import trio
from hypercorn.config import Config as HypercornConfig

from .app import create_app
from .catalog import ModelCatalog
from .child import Sentinel
from .codex_setup import CodexLocator
from .connections import Address, drop_all_clients
from .engines import seed_home, spare_launcher
from .runs import RunManager
from .scratch import ScratchRoot, sweep_stale
from .settings import Settings
from .spares import SparePool

log = logging.getLogger(__name__)

#: Beyond the kill grace, how long a shutdown waits for clients to take the end of their
#: streams before it disconnects them.
SHUTDOWN_SLACK_S = 3.0


def shutdown_bound_s(settings: Settings) -> float:
    """How long after SIGTERM the proxy has exited, whatever its clients do (within the moment
    SIGKILL and the last clean-up take)."""
    return settings.kill_grace_s + SHUTDOWN_SLACK_S


@dataclass
class RunningServer:
    urls: list[str]
    manager: RunManager
    catalog: ModelCatalog
    locator: CodexLocator
    runtime_dir: Path
    _stop: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def shut_down(self) -> None:
        """Begin the same shutdown SIGTERM begins."""
        self._stop.set()

    async def reload_catalog(self) -> None:
        """Read Codex's model catalog and the user's Codex home again (SIGHUP does this); the
        warm spares started before are replaced."""
        await self.locator.refresh(self.catalog)
        self.locator.children_set_up = trio.Event()
        await set_up_children(self.locator, self.manager, self.runtime_dir)


async def set_up_children(locator: CodexLocator, manager: RunManager, runtime_dir: Path) -> None:
    """After a (re)read of Codex's setup: the seed Codex home app-server children start
    from, and warm spares started with the new setup."""
    settings = manager.settings
    setup = await locator.get()
    old_seed = locator.seed_home
    locator.seed_home = None
    locator.seed_home = await seed_home(setup, settings, runtime_dir / f"seed-{setup.generation}",
                                        locator.sentinel)
    if old_seed is not None and old_seed != locator.seed_home:
        shutil.rmtree(old_seed.parent, ignore_errors=True)
    if manager.spares is not None and not manager.closing:
        manager.spares.use(spare_launcher(await locator.get(), settings))
    locator.children_set_up.set()


#: How long an idle keep-alive connection is kept open.
KEEP_ALIVE_S = 75.0


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    # Hypercorn cancels what is left of its connections then; the proxy disconnects the
    # clients those connections wait for at the same moment (see `_disconnect_clients_after`).
    config.graceful_timeout = shutdown_bound_s(settings)
    config.accesslog = settings.access_log or None
    # A Logger, not "-": hypercorn would add a handler of its own and every line would be
    # printed twice, once by it and once by the root handler the CLI set up.
    config.errorlog = logging.getLogger("hypercorn.error")
    # read_timeout stays unset: a streaming client sends nothing while it waits for an answer.
    # An idle connection is kept longer than clients keep theirs (httpx, so the openai Python
    # SDK: 5 s; Node's fetch: 4 s), so that the client is the one to close it. At hypercorn's
    # own 5 s, a request sent just as the server closed the connection failed with "Server
    # disconnected without sending a response" (seen at 64 streams in scripts/bench_codex.py).
    config.keep_alive_timeout = KEEP_ALIVE_S
    _close_connections_when_the_client_has_gone()
    return config


def _close_connections_when_the_client_has_gone() -> None:
    """Make hypercorn's trio server close a connection as soon as its client has closed or
    reset it, not when the keep-alive time is up (75 s, each holding a descriptor meanwhile).

    Hypercorn 0.17-0.18 (trio) stops reading at the client's end-of-file or reset, then waits
    out the keep-alive timer before it closes its own end: each connection a client closed
    stayed open (in CLOSE-WAIT) for the whole keep-alive time. Its asyncio server stops the
    timer at end-of-file; this does the same for the trio one. Stopping it is not enough: a
    response that ends after the reading did (the proxy sends its last chunk under a shield,
    and a reset that arrives just before it leaves the client's side of the protocol at "done")
    starts the timer again, for a client that can send nothing more. So once the reading has
    ended, the timer closes the connection at once instead of waiting.
    Without the attributes this relies on (another hypercorn), nothing is changed."""
    server = hypercorn.trio.tcp_server.TCPServer
    read_data = getattr(server, "_read_data", None)
    idle_timeout = getattr(server, "_idle_timeout", None)
    if read_data is None or idle_timeout is None \
            or not hasattr(server, "_initiate_server_close") \
            or getattr(read_data, "closes_when_the_client_has_gone", False):
        return

    async def read_then_stop_the_idle_timer(self: Any) -> None:
        await read_data(self)
        self.client_has_gone = True
        if (idle_task := getattr(self, "idle_task", None)) is not None:
            await idle_task.stop()

    async def keep_alive_while_the_client_can_send(self: Any) -> None:
        if not getattr(self, "client_has_gone", False):
            await idle_timeout(self)
            return
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()

    read_then_stop_the_idle_timer.closes_when_the_client_has_gone = True  # type: ignore[attr-defined]
    server._read_data = read_then_stop_the_idle_timer
    server._idle_timeout = keep_alive_while_the_client_can_send


async def _handle_signals(server: RunningServer, nursery: trio.Nursery,
                          bound_s: float) -> None:
    """Until cancelled, once the server is done: see the module docstring."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if server.stopping:
                log.info("received %s while shutting down: the shutdown carries on", name)
            elif signum == signal.SIGHUP:
                log.info("received SIGHUP, reading Codex's model catalog again")
                # In a task of its own, so that a SIGTERM meanwhile is acted on at once.
                nursery.start_soon(server.reload_catalog)
            else:
                log.info("received %s, shutting down (within %g s)", name, bound_s)
                server.shut_down()


def _address(url: str) -> Address:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    return host.strip("[]"), int(port)


async def _disconnect_clients_after(seconds: float, urls: list[str]) -> None:
    await trio.sleep(seconds)
    if count := drop_all_clients([_address(url) for url in urls]):
        log.warning("%d client connection(s) still open %g s into the shutdown: disconnected",
                    count, seconds)


async def default_model(settings: Settings, env: Mapping[str, str]) -> str:
    """The model requests that name none will run, as a proxy started now would find it."""
    with tempfile.TemporaryDirectory(prefix="codex-openai-proxy-") as runtime_dir:
        catalog = ModelCatalog(settings.codex_model, settings.effort_models)
        await CodexLocator(settings, env, Path(runtime_dir)).refresh(catalog)
        return catalog.default_model


async def serve_proxy(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    env = dict(os.environ if env is None else env)
    sweep_stale()
    # The proxy's own files (the catalog it writes for Codex, the children's homes, the runs'
    # folders), gone when it stops, and swept by the sentinel or the next start if it dies.
    scratch = ScratchRoot.create()
    try:
        async with Sentinel.running() as sentinel:
            sentinel.remove_on_death(scratch.path)
            await _serve(settings, env, scratch, sentinel, handle_signals, task_status)
    finally:
        scratch.remove()


async def _serve(settings: Settings, env: dict[str, str], scratch: ScratchRoot,
                 sentinel: Sentinel, handle_signals: bool,
                 task_status: trio.TaskStatus[RunningServer]) -> None:
    runtime_dir = Path(scratch.path)
    locator = CodexLocator(settings, env, runtime_dir, sentinel)
    catalog = ModelCatalog(settings.codex_model, settings.effort_models)
    await locator.refresh(catalog)
    spares = None
    if settings.warm_children:
        spares = SparePool(settings.warm_children, runtime_dir, kill_grace_s=settings.kill_grace_s,
                           warm_up_timeout_s=settings.reply_timeout_s, sentinel=sentinel)
    manager = RunManager(settings, locator, scratch, spares)
    app = create_app(settings, manager, locator, catalog)
    server = RunningServer([], manager, catalog, locator, runtime_dir)

    bound_s = shutdown_bound_s(settings)

    async def shutdown_trigger() -> None:
        await server._stop.wait()
        manager.close()
        nursery.start_soon(_disconnect_clients_after, bound_s, server.urls)

    async with trio.open_nursery() as nursery:
        if handle_signals:
            nursery.start_soon(_handle_signals, server, nursery, bound_s)
        if spares is not None:
            await nursery.start(spares.run)
        # In the background: requests are served meanwhile (their children start from empty
        # homes, with no spare to take, until it is done).
        nursery.start_soon(set_up_children, locator, manager, runtime_dir)

        async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
            await hypercorn.trio.serve(app, hypercorn_config(settings),
                                       shutdown_trigger=shutdown_trigger,
                                       task_status=task_status)
            # Every request has ended, and each ends only once its child is reaped.
            await manager.wait_idle()
            nursery.cancel_scope.cancel()

        server.urls = await nursery.start(partial(serve))
        log.info("codex-openai-proxy listening on %s (Codex: %s)", server.url,
                 locator.install.path if locator.install and locator.install.found
                 else "not found")
        task_status.started(server)
