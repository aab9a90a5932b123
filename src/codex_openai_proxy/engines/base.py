"""What every engine shares: the run it prepares, the sink it delivers to, its workspace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..child import Child, ChildLaunch
from ..codex_events import CodexEvent
from ..settings import EngineName


class EventSink(Protocol):
    """Where a driver hands a run's events, and whether they have made a whole answer."""

    @property
    def answered(self) -> bool:
        """True once the answer is complete (or failed): the driver stops reading then."""
        ...

    async def deliver(self, events: Sequence[CodexEvent]) -> None:
        """Hand the events over; may wait while the reader catches up."""
        ...


@dataclass(frozen=True)
class Workspace:
    """The run's own folders, removed with it: `directory`, Codex's working directory (empty,
    but for what the engine puts there for Codex to read), and `private`, for the engine's
    own files (the child's Codex home)."""

    directory: Path
    private: Path

    @classmethod
    def inside(cls, root: Path) -> Workspace:
        (root / "work").mkdir()
        (root / "private").mkdir(mode=0o700)
        return cls(root / "work", root / "private")


@dataclass(frozen=True)
class SpareLauncher:
    """How to start children ahead of demand (warm spares), for the runs whose `spare_key`
    is `key`: `launch(directory)` says how to start one (in a directory made for it, which
    goes with the child); `warm_up(child)` takes it through its engine's start-up handshake."""

    key: Hashable
    launch: Callable[[Path], ChildLaunch]
    warm_up: Callable[[Child], Awaitable[None]]


class EngineRun(Protocol):
    """One request's run on one engine: decided before the child starts, driven after."""

    engine: EngineName
    #: A warm spare started with this key can serve the run (None: only a child of its own).
    spare_key: Hashable | None

    def launch(self, workspace: Workspace) -> ChildLaunch:
        """How to start a child of the run's own, in the run's workspace."""
        ...

    def describe_input(self) -> str:
        """What Codex is given, for the debug log when PROXY_LOG_BODIES is on."""
        ...

    def release(self) -> None:
        """Remove whatever the run left outside its workspace, once its child is gone."""
        ...

    async def drive(self, child: Child, sink: EventSink) -> None:
        """Talk to the child (its own, or a spare, `child.warmed`) until the answer is
        complete or the child's output ends.

        Cancellation (client gone, deadline, shutdown) may arrive at any await; the child is
        stopped by its owner afterwards, so a driver only tidies up its own conversation."""
        ...
