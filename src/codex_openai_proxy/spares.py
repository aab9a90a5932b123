"""Warm spare children: Codex started and initialized ahead of demand (I/O).

Starting a Codex child and taking it through `initialize` is most of the time from a request to
the model's request (Codex's own start-up). The pool keeps `PROXY_WARM_CHILDREN` children
started that far, so that a request takes one and begins at its thread.

Each spare always has one owner. While it waits, that is the pool: a task of the pool's
nursery (the server's) holds it, drains its stderr, reads its stdout (a spare that exits is
noticed and replaced), and stops it when the pool closes or the spare's launch goes stale. A
request takes it with `take`: the pool's task lets go (its hold is cancelled, and `take` waits,
shielded, until the task has stopped using the child's pipes), and the request owns it from
then on exactly as a child of its own (`child.owning`): its nursery, its cancel scope, stopped
on disconnect, deadline or shutdown. A spare is never handed back: a fresh one is started in
its place. A spare only serves runs whose launch key is its own (same Codex, same settings,
same catalog generation): after a SIGHUP, the old spares are stopped and new ones started.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from .child import Child, Sentinel, draining, start_child
from .engines import SpareLauncher

log = logging.getLogger(__name__)

#: After a spare failed to start, the next try waits this long (doubling up to the maximum),
#: so that a broken Codex is not restarted in a tight loop.
RETRY_WAIT_S = 1.0
MAX_RETRY_WAIT_S = 60.0


@dataclass(eq=False)
class Spare:
    child: Child
    key: Hashable
    hold: trio.CancelScope = field(default_factory=trio.CancelScope)
    taken: bool = False
    released: trio.Event = field(default_factory=trio.Event)


class SparePool:
    def __init__(self, size: int, directory: Path, *, kill_grace_s: float,
                 warm_up_timeout_s: float, sentinel: Sentinel | None = None) -> None:
        self.size = size
        self._sentinel = sentinel
        self._directory = directory
        self._kill_grace_s = kill_grace_s
        self._warm_up_timeout_s = warm_up_timeout_s
        self._launcher: SpareLauncher | None = None
        self._ready: list[Spare] = []
        self._starting = 0
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._numbers = itertools.count(1)
        self._retry_wait_s = 0.0
        self._changed = trio.Event()

    @property
    def ready(self) -> int:
        return len(self._ready)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Keep the spares, until `close` (or cancellation, which stops them all too)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            self._refill()
            try:
                await trio.sleep_forever()
            finally:
                # Cancelled from outside: the spares stop as the nursery goes, and none may
                # take their place.
                self._closed = True

    def use(self, launcher: SpareLauncher | None) -> None:
        """Start spares with `launcher` from now on; spares of another key are stopped."""
        self._launcher = launcher
        for spare in list(self._ready):
            if launcher is None or spare.key != launcher.key:
                self._ready.remove(spare)
                spare.hold.cancel()
        self._retry_wait_s = 0.0
        self._refill()

    def close(self) -> None:
        """Stop every spare and start no more (server shutdown)."""
        self._closed = True
        for spare in self._ready:
            spare.hold.cancel()
        self._ready.clear()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def take(self, key: Hashable) -> Child | None:
        """A warm spare for a run with `key`, now owned by the caller; None if there is none."""
        spare = next((spare for spare in self._ready if spare.key == key), None)
        if spare is None:
            return None
        self._ready.remove(spare)
        spare.taken = True
        spare.hold.cancel()
        # Shielded: the child is the caller's from here, and must reach its owner whatever
        # happens; the spare's task lets go at its next checkpoint.
        with trio.CancelScope(shield=True):
            await spare.released.wait()
        self._refill()
        return spare.child

    async def wait_ready(self, count: int) -> None:
        """Until exactly `count` spares are ready (for tests and benchmarks)."""
        while self.ready != count:
            await self._changed.wait()

    def _note_change(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _refill(self) -> None:
        if self._closed or self._launcher is None or self._nursery is None:
            return
        while len(self._ready) + self._starting < self.size:
            self._starting += 1
            self._nursery.start_soon(self._keep, self._launcher, self._retry_wait_s)

    async def _keep(self, launcher: SpareLauncher, wait_s: float) -> None:
        """Start one spare, warm it up, and hold it until it is taken, stale or gone."""
        spare: Spare | None = None
        starting = True  # counted in `_starting` until it is ready, or lost
        replace = True
        try:
            await trio.sleep(wait_s)
            directory = self._directory / f"spare-{next(self._numbers)}"
            child = await start_child(launcher.launch(directory), self._sentinel)
            spare = Spare(child, launcher.key)
            with spare.hold:
                # A refusal that meets the pool's cancellation comes out of `draining` as
                # raised, and is caught below: it cannot go up to the server.
                async with draining(child):
                    with trio.fail_after(self._warm_up_timeout_s):
                        await launcher.warm_up(child)
                    self._starting -= 1
                    starting = False
                    self._ready.append(spare)
                    self._retry_wait_s = 0.0
                    self._note_change()
                    log.debug("spare pid=%s ready", child.pid)
                    # Idle, it says nothing; whatever it does say is read here (and logged),
                    # so that its pipe never fills. Its output ending means it has exited.
                    while (line := await child.read_line()) is not None:
                        log.debug("spare pid=%s says: %s", child.pid, line[:300])
                raise SpareLost(f"it exited: {child.stderr_tail().strip()[-300:]}")
        except Exception as error:  # the spare is lost; the next one waits a little
            log.warning("a warm Codex spare was lost: %s", error or type(error).__name__)
            self._retry_wait_s = min(MAX_RETRY_WAIT_S, max(RETRY_WAIT_S, self._retry_wait_s * 2))
        except BaseException:  # cancelled: the pool is going away; nothing takes its place
            replace = False
            raise
        finally:
            if starting:
                self._starting -= 1
            if spare is not None:
                if spare in self._ready:
                    self._ready.remove(spare)
                if not spare.taken:
                    with trio.CancelScope(shield=True):
                        await spare.child.stop(self._kill_grace_s)
                        await spare.child.close()
                spare.released.set()
            self._note_change()
            if replace:
                self._refill()


class SpareLost(Exception):
    pass

