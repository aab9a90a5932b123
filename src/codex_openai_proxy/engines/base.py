"""What every engine shares: the run it prepares, the sink it delivers to, its workspace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..child import Child
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
    """The run's own empty folder (Codex's working directory) and the images written into it,
    in the order the conversation shows them."""

    directory: str
    image_paths: tuple[str, ...] = ()


class EngineRun(Protocol):
    """One request's run on one engine: decided before the child starts, driven after."""

    engine: EngineName
    argv: Sequence[str]

    @property
    def prompt(self) -> str:
        """The user input Codex is given: the text its input limit counts."""
        ...

    def describe_input(self) -> str:
        """What Codex is given, for the debug log when PROXY_LOG_BODIES is on."""
        ...

    async def drive(self, child: Child, sink: EventSink) -> None:
        """Talk to the child until the answer is complete or the child's output ends.

        Cancellation (client gone, deadline, shutdown) may arrive at any await; the child is
        stopped by its owner afterwards, so a driver only tidies up its own conversation."""
        ...
