"""Serving the app with hypercorn's trio worker, and stopping it cleanly.

Hypercorn's `serve` is run directly (not its CLI) so that the proxy owns shutdown: SIGTERM or
SIGINT stops the listener and, at the same moment, stops every queued and running Codex run,
whose streams then end with a `shutting_down` error. Hypercorn gives open connections
`graceful_timeout` to finish, which is more than the kill grace a child needs to be stopped, so
by the time `serve_proxy` returns every child has been reaped.
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

import hypercorn.trio
import trio
from hypercorn.config import Config as HypercornConfig

from .app import create_app
from .catalog import ModelCatalog
from .codex_setup import CodexLocator
from .engines import spare_launcher
from .engines.app_server import seed_home
from .runs import RunManager
from .settings import Settings
from .spares import SparePool

log = logging.getLogger(__name__)


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
    if setup.install.found and setup.install.capabilities.app_server:
        locator.seed_home = await seed_home(setup, settings,
                                            runtime_dir / f"seed-{setup.generation}")
    if old_seed is not None and old_seed != locator.seed_home:
        shutil.rmtree(old_seed.parent, ignore_errors=True)
    if manager.spares is not None and not manager.closing:
        manager.spares.use(spare_launcher(await locator.get(), settings))
    locator.children_set_up.set()


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = settings.kill_grace_s + 5
    config.accesslog = settings.access_log or None
    # A Logger, not "-": hypercorn would add a handler of its own and every line would be
    # printed twice, once by it and once by the root handler the CLI set up.
    config.errorlog = logging.getLogger("hypercorn.error")
    # read_timeout stays unset: a streaming client sends nothing while it waits for an answer.
    return config


async def _handle_signals(server: RunningServer) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("received SIGHUP, reading Codex's model catalog again")
                await server.reload_catalog()
                continue
            log.info("received %s, shutting down", signal.Signals(signum).name)
            server.shut_down()
            return


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
    # The proxy's own files (the catalog it writes for Codex), gone when it stops.
    with tempfile.TemporaryDirectory(prefix="codex-openai-proxy-") as runtime_dir:
        await _serve(settings, env, Path(runtime_dir), handle_signals, task_status)


async def _serve(settings: Settings, env: dict[str, str], runtime_dir: Path,
                 handle_signals: bool, task_status: trio.TaskStatus[RunningServer]) -> None:
    locator = CodexLocator(settings, env, runtime_dir)
    catalog = ModelCatalog(settings.codex_model, settings.effort_models)
    await locator.refresh(catalog)
    spares = None
    if settings.warm_children:
        spares = SparePool(settings.warm_children, runtime_dir, kill_grace_s=settings.kill_grace_s,
                           warm_up_timeout_s=settings.reply_timeout_s)
    manager = RunManager(settings, locator, spares)
    app = create_app(settings, manager, locator, catalog)
    server = RunningServer([], manager, catalog, locator, runtime_dir)

    async def shutdown_trigger() -> None:
        await server._stop.wait()
        manager.close()

    async with trio.open_nursery() as nursery:
        if handle_signals:
            nursery.start_soon(_handle_signals, server)
        if spares is not None:
            await nursery.start(spares.run)
        # In the background: requests are served meanwhile (their children start from empty
        # homes, with no spare to take, until it is done).
        nursery.start_soon(set_up_children, locator, manager, runtime_dir)

        async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
            await hypercorn.trio.serve(app, hypercorn_config(settings),
                                       shutdown_trigger=shutdown_trigger,
                                       task_status=task_status)
            nursery.cancel_scope.cancel()

        server.urls = await nursery.start(partial(serve))
        log.info("codex-openai-proxy listening on %s (Codex: %s)", server.url,
                 locator.install.path if locator.install and locator.install.found
                 else "not found")
        task_status.started(server)
