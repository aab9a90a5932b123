"""The ChatGPT plan's usage limits, as Codex reports them (pure).

A ChatGPT login has usage windows: a primary one (5 hours) and a secondary one (a week), each
with the share used and when it resets, and credits. The backend sends them as `x-codex-*`
headers on every model response; Codex's app-server passes them on as an
`account/rateLimits/updated` notification (just before a turn ends, or just before the error
of a turn the limit stopped), and answers `account/rateLimits/read` with the same shape. Checked
on codex-cli 0.169.0 (codex-rs/app-server-protocol v2 `RateLimitSnapshot`):

    {"limitId": "codex", "limitName": null, "planType": "plus" | null,
     "primary": {"usedPercent": 43, "windowDurationMins": 300, "resetsAt": 1795630186} | null,
     "secondary": {...} | null,
     "credits": {"hasCredits": true, "unlimited": false, "balance": "12.34"} | null,
     "rateLimitReachedType": "rate_limit_reached" | ... | null}

`null` means "not known this time", not "none": a response without the headers still yields a
snapshot, all null, so a new snapshot is merged into the last one field by field.

`PlanLimits` keeps the latest per limit (`codex` is the plan's own; others are per-model
limits, e.g. `codex_bengalfox`), and says them as the proxy shows them: `GET /v1/usage`,
`x-ratelimit-*` headers, Prometheus gauges, and the reset a 429 waits for.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from .codex_events import TurnFailed

#: The plan's own limit; the others are per model.
PLAN_LIMIT_ID = "codex"
WINDOW_NAMES = ("primary", "secondary")


@dataclass(frozen=True)
class Window:
    used_percent: int | None = None
    window_minutes: int | None = None
    resets_at: int | None = None  # Unix seconds

    def label(self) -> str:
        """The window as people call it: "5-hour", "weekly"."""
        minutes = self.window_minutes
        if not minutes:
            return "usage"
        if minutes == 7 * 24 * 60:
            return "weekly"
        if minutes % (24 * 60) == 0:
            return f"{minutes // (24 * 60)}-day"
        if minutes % 60 == 0:
            return f"{minutes // 60}-hour"
        return f"{minutes}-minute"

    def reached(self) -> bool:
        return self.used_percent is not None and self.used_percent >= 100

    def resets_in(self, now: float) -> int | None:
        """Seconds until the window resets (0 once past), if known."""
        return None if self.resets_at is None else max(0, round(self.resets_at - now))


@dataclass(frozen=True)
class Credits:
    has_credits: bool | None = None
    unlimited: bool | None = None
    balance: str | None = None


@dataclass(frozen=True)
class LimitSnapshot:
    limit_id: str = PLAN_LIMIT_ID
    limit_name: str | None = None
    plan_type: str | None = None
    primary: Window | None = None
    secondary: Window | None = None
    credits: Credits | None = None
    reached_type: str | None = None

    def windows(self) -> list[tuple[str, Window]]:
        return [(name, window) for name in WINDOW_NAMES
                if (window := getattr(self, name)) is not None]


def parse_snapshot(raw: Any) -> LimitSnapshot | None:
    """App-server's `RateLimitSnapshot`; None when it is not one. A field of the wrong type
    counts as unknown: the limits are for showing, never a reason to fail a run."""
    if not isinstance(raw, dict):
        return None
    credits = raw.get("credits")
    return LimitSnapshot(
        limit_id=_text(raw.get("limitId")) or PLAN_LIMIT_ID,
        limit_name=_text(raw.get("limitName")),
        plan_type=_text(raw.get("planType")),
        primary=_window(raw.get("primary")),
        secondary=_window(raw.get("secondary")),
        credits=Credits(_flag(credits.get("hasCredits")), _flag(credits.get("unlimited")),
                        _text(credits.get("balance"))) if isinstance(credits, dict) else None,
        reached_type=_text(raw.get("rateLimitReachedType")),
    )


def merged(old: LimitSnapshot | None, new: LimitSnapshot) -> LimitSnapshot:
    """`new`, with what it does not know taken from `old`."""
    if old is None:
        return new
    kept = {field.name: getattr(old, field.name) for field in dataclasses.fields(new)
            if getattr(new, field.name) is None}
    return dataclasses.replace(new, **kept)


class PlanLimits:
    """The latest limits the proxy's children have reported (or Codex read when asked)."""

    def __init__(self) -> None:
        self._by_id: dict[str, LimitSnapshot] = {}
        self.updated_at: float | None = None

    def update(self, raw: Any, now: float) -> None:
        snapshot = parse_snapshot(raw)
        if snapshot is None:
            return
        self._by_id[snapshot.limit_id] = merged(self._by_id.get(snapshot.limit_id), snapshot)
        self.updated_at = now

    @property
    def plan(self) -> LimitSnapshot | None:
        return self._by_id.get(PLAN_LIMIT_ID)

    def reached(self, now: float) -> tuple[str, int | None] | None:
        """Which limit stops the plan, and in how many seconds it resets: the windows used up
        (all must reset before a request goes through again), or None when none is known."""
        for snapshot in self._ordered():
            used_up = [window for _, window in snapshot.windows() if window.reached()]
            if not used_up:
                continue
            names = " and ".join(window.label() for window in used_up)
            which = f"the {names} limit" + (f" for {snapshot.limit_name}"
                                              if snapshot.limit_name else "")
            resets = [seconds for window in used_up
                      if (seconds := window.resets_in(now)) is not None]
            return which, max(resets) if resets else None
        return None

    def as_json(self, now: float) -> dict[str, Any]:
        """`GET /v1/usage`: the plan, each window, the credits; null where not known yet."""
        plan = self.plan
        return {
            "object": "codex.usage",
            "plan_type": next((snapshot.plan_type for snapshot in self._ordered()
                               if snapshot.plan_type), None),
            "limits": [_limit_json(snapshot, now) for snapshot in self._ordered()],
            "credits": dataclasses.asdict(plan.credits) if plan and plan.credits else None,
            "updated_at": round(self.updated_at) if self.updated_at is not None else None,
        }

    def headers(self, now: float) -> dict[str, str]:
        """`x-ratelimit-*` headers for the plan's own limit, where known."""
        plan = self.plan
        if plan is None:
            return {}
        headers: dict[str, str] = {}
        if plan.plan_type:
            headers["x-ratelimit-plan-type"] = plan.plan_type
        for name, window in plan.windows():
            prefix = f"x-ratelimit-{name}-"
            if window.used_percent is not None:
                headers[prefix + "used-percent"] = str(window.used_percent)
            if window.window_minutes is not None:
                headers[prefix + "window-minutes"] = str(window.window_minutes)
            if window.resets_at is not None:
                headers[prefix + "reset-at"] = str(window.resets_at)
                headers[prefix + "reset-after-seconds"] = str(window.resets_in(now))
        if plan.credits is not None and plan.credits.balance is not None:
            headers["x-ratelimit-credits-balance"] = plan.credits.balance
        return headers

    def gauges(self) -> list[tuple[str, str, str, float]]:
        """(metric, limit id, window, value) for every number known."""
        values = []
        for snapshot in self._ordered():
            for name, window in snapshot.windows():
                for metric, value in (("used_percent", window.used_percent),
                                      ("window_minutes", window.window_minutes),
                                      ("resets_at_seconds", window.resets_at)):
                    if value is not None:
                        values.append((metric, snapshot.limit_id, name, float(value)))
        return values

    def credits_balance(self) -> float | None:
        plan = self.plan
        if plan is None or plan.credits is None or plan.credits.balance is None:
            return None
        try:
            return float(plan.credits.balance)
        except ValueError:
            return None

    def _ordered(self) -> list[LimitSnapshot]:
        """The plan's own limit first, then the others by id."""
        return sorted(self._by_id.values(),
                      key=lambda snapshot: (snapshot.limit_id != PLAN_LIMIT_ID,
                                            snapshot.limit_id))


def explain(failure: TurnFailed, limits: PlanLimits, now: float) -> TurnFailed:
    """A failure Codex put down to a limit, with which limit it is and when it resets, as the
    limits Codex reported just before say (or, for a rate limit, as Codex's words say)."""
    reached = limits.reached(now)
    if reached is not None:
        which, seconds = reached
        return dataclasses.replace(
            failure, resets_in_s=seconds,
            message=f"{failure.message} (ChatGPT plan: {which} is used up; it "
                    f"{describe_reset(seconds, now)}.)")
    if failure.kind == "rate_limit" and (hint := _TRY_AGAIN.search(failure.message)):
        amount = float(hint.group(1))
        return dataclasses.replace(failure, resets_in_s=max(1, math.ceil(
            amount / 1000 if hint.group(2) == "ms" else amount)))
    return failure


#: "Please try again in 20s." / "in 350ms", as the upstream words a rate limit.
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)\s*(ms|s)\b", re.IGNORECASE)


def describe_reset(seconds: int | None, now: float) -> str:
    """ "resets at 2026-11-25 18:09 UTC, in 2 h 17 min" """
    if seconds is None:
        return "its reset time is not known"
    at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now + seconds))
    hours, rest = divmod(seconds, 3600)
    minutes = -(-rest // 60) if hours == 0 else rest // 60
    if hours >= 48:
        after = f"{hours // 24} days"
    elif hours:
        after = f"{hours} h {minutes} min"
    else:
        after = f"{max(minutes, 1) if seconds else 0} min"
    return f"resets at {at}, in {after}"


def _limit_json(snapshot: LimitSnapshot, now: float) -> dict[str, Any]:
    def window(value: Window | None) -> dict[str, Any] | None:
        if value is None:
            return None
        return {"used_percent": value.used_percent, "window_minutes": value.window_minutes,
                "resets_at": value.resets_at, "resets_in_seconds": value.resets_in(now)}

    return {"limit_id": snapshot.limit_id, "limit_name": snapshot.limit_name,
            "primary": window(snapshot.primary), "secondary": window(snapshot.secondary),
            "reached_type": snapshot.reached_type}


def _window(raw: Any) -> Window | None:
    if not isinstance(raw, dict):
        return None
    return Window(_number(raw.get("usedPercent")), _number(raw.get("windowDurationMins")),
                  _number(raw.get("resetsAt")))


def _number(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return round(value)


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
