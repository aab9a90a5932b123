"""What a Codex run says, in terms both engines share (pure).

`codex exec --json` and `codex app-server` describe a turn differently; their protocol modules
translate into these events so that everything downstream (the answer policy, the OpenAI wire
format, the logs) is written once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0


def parse_usage(raw: Any) -> Usage | None:
    """Codex's token counts, as exec (`input_tokens`) or app-server (`inputTokens`) spells them.

    Anything that is not a positive whole number counts as 0, so a malformed count never
    fails an answer that is otherwise good.
    """
    if not isinstance(raw, dict):
        return None

    def count(name: str) -> int:
        head, *rest = name.split("_")
        value = raw.get(name, raw.get(head + "".join(word.title() for word in rest)))
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    return Usage(**{field.name: count(field.name) for field in fields(Usage)})


@dataclass(frozen=True)
class MessageDelta:
    """Part of an agent message, as the model produces it (app-server only)."""

    item_id: str
    text: str


@dataclass(frozen=True)
class MessageDone:
    """An agent message, whole."""

    item_id: str
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    item_id: str
    text: str


@dataclass(frozen=True)
class ReasoningDone:
    item_id: str
    text: str


@dataclass(frozen=True)
class ToolCallRequested:
    """The model called one of the client's tools; the proxy hands the call to the client."""

    call_id: str
    name: str
    arguments: str  # JSON text


@dataclass(frozen=True)
class ResponseCompleted:
    """One model response within the turn has ended (app-server raw events only).

    A turn that calls client tools never completes on its own (Codex waits for the results,
    which only the client can give), so the end of the model's response is what ends the
    answer, and its usage is the answer's usage.
    """

    usage: Usage | None


@dataclass(frozen=True)
class TurnCompleted:
    usage: Usage | None


#: What failed: Codex or the upstream (`codex`), the login (`auth`), the ChatGPT plan's usage
#: limit or credits (`usage_limit`), the upstream's rate limit (`rate_limit`).
FailureKind = Literal["codex", "auth", "usage_limit", "rate_limit"]


@dataclass(frozen=True)
class TurnFailed:
    """A failed turn. `message` is for the client: Codex's own words about the failure, made
    safe to show (`safe_for_client`), or the proxy's. `detail` is for the proxy's log only:
    Codex's words unredacted, and its error output.

    For a limit, `resets_in_s` is when it resets, once the run has matched the failure with
    the limits Codex reported (`plan_limits.explain`)."""

    message: str
    kind: FailureKind = "codex"
    detail: str = field(default="", compare=False)
    resets_in_s: int | None = None


@dataclass(frozen=True)
class PlanLimitsUpdated:
    """Codex's latest view of the ChatGPT plan's usage limits (app-server's
    `account/rateLimits/updated`), raw: `plan_limits.parse_snapshot` reads it."""

    snapshot: Any


@dataclass(frozen=True)
class Notice:
    """Operational output (commands, file changes, retries, warnings): logged, never sent."""

    kind: str
    detail: str


CodexEvent = (
    MessageDelta
    | MessageDone
    | ReasoningDelta
    | ReasoningDone
    | ToolCallRequested
    | ResponseCompleted
    | TurnCompleted
    | TurnFailed
    | PlanLimitsUpdated
    | Notice
)

_AUTH_FAILURE = re.compile(
    r"\b401\b|unauthori[sz]ed|not logged in|login required|please log ?in|"
    r"invalid api key|incorrect api key|token (?:has )?expired|refresh token",
    re.IGNORECASE,
)

LOGIN_HINT = "Codex is not logged in or its login has expired: run `codex login` and try again."

#: How Codex words a limit reached upstream, for `codex exec` (whose JSON has no typed error)
#: and as a fallback: "You've hit your usage limit..." (U+2019 for the apostrophe), "Quota
#: exceeded...", "To use Codex with your ChatGPT plan, upgrade to Plus...", "rate limit
#: exceeded: ...", and a 429 its retries did not get past ("exceeded retry limit, last status:
#: 429 Too Many Requests").
_USAGE_LIMIT_FAILURE = re.compile(
    r"^You[\u2019']ve hit your usage limit|^Quota exceeded\b|^To use Codex with your ChatGPT plan|"
    r"^Your workspace is out of credits|^You hit your spend cap", re.IGNORECASE)
_RATE_LIMIT_FAILURE = re.compile(
    r"^rate limit exceeded\b|exceeded retry limit, last status: 429\b", re.IGNORECASE)


def limit_kind(message: str, error_info: Any = None) -> FailureKind | None:
    """Whether a failure is a limit reached upstream: from app-server's typed `codexErrorInfo`
    when there is one (`usageLimitExceeded`, `rateLimitExceeded`, or a 429 Codex's retries
    did not get past), else from Codex's words."""
    if error_info == "usageLimitExceeded":
        return "usage_limit"
    if error_info == "rateLimitExceeded" or (
            isinstance(error_info, dict) and isinstance(
                attempts := error_info.get("responseTooManyFailedAttempts"), dict)
            and attempts.get("httpStatusCode") == 429):
        return "rate_limit"
    if error_info not in (None, "other") and not isinstance(error_info, dict):
        return None
    text = message.strip()
    if _USAGE_LIMIT_FAILURE.search(text):
        return "usage_limit"
    if _RATE_LIMIT_FAILURE.search(text):
        return "rate_limit"
    return None


def failure(message: str, log_only: str = "", error_info: Any = None) -> TurnFailed:
    """A failure, recognised as an authentication problem where Codex says so.

    `message` is what Codex reported through its protocol (a failed turn, the upstream's error:
    "rate limit reached", "401 Unauthorized", what the model API said), which the client is
    shown once made safe, or the proxy's own words. `log_only` is what goes to the log alone:
    Codex's stderr (which quotes its config file, tokens and all, paths and backtraces), output
    that is not its protocol, a reason its app-server gave for refusing a request.
    `error_info` is app-server's typed `codexErrorInfo`, where it has one."""
    message = message.strip() or "Codex failed without a message."
    log_only = log_only.strip()
    detail = message + (f"\n{log_only}" if log_only else "")
    shown = safe_for_client(message)
    if kind := limit_kind(message, error_info):
        return TurnFailed(shown, kind, detail)
    if _AUTH_FAILURE.search(message):
        return TurnFailed(f"{LOGIN_HINT} (Codex said: {shown})", "auth", detail)
    if _AUTH_FAILURE.search(log_only):
        return TurnFailed(f"{LOGIN_HINT} ({shown})", "auth", detail)
    return TurnFailed(shown, "codex", detail)


def error_output(stderr_tail: str) -> str:
    """Codex's stderr, as `failure`'s `log_only` puts it."""
    return f"Codex's error output:\n{stderr_tail.strip()}" if stderr_tail.strip() else ""


def see_the_log(has_more: bool) -> str:
    """How a proxy-worded failure ends: whether the log has more to say."""
    return "; its error output is in the proxy's log." if has_more else "."


#: The longest text from Codex a client is shown.
MAX_SHOWN_CHARS = 1000
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'`<>()]+", re.IGNORECASE)
#: Absolute paths (and `~/...`): a slash not inside a word, a number (`1/5`) or a URL.
_PATH = re.compile(r"(?<![\w.~/:-])~?/[\w.@+-]+(?:/[\w.@+-]*)*")
_SECRETS = (
    # Token-shaped: long and with a digit, so that "bearer or basic authentication" stays.
    (re.compile(r"\b(bearer|basic)(\s+)(?=[\w.~+/=-]*\d)[\w.~+/=-]{8,}", re.IGNORECASE),
     r"\1\2<redacted>"),
    (re.compile(r"\bsk-[\w-]{8,}"), "<redacted>"),
    (re.compile(r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*"), "<redacted>"),  # a JWT
    # `name: value` where the value looks like one (a digit, or long): "token: expired" stays.
    (re.compile(r"""(?ix)\b((?:api[_-]?)?key|token|secret|password|passwd|authorization|cookie)
                    (["']?\s*[:=]\s*["']?)(?=[^\s"',;}]*\d|[^\s"',;}]{16})[^\s"',;}]+"""),
     r"\1\2<redacted>"),
)
#: Lines that are a file's contents or a program's insides: a config file quoted around an
#: error (`7 | key = "..."`), backtrace frames, panic locations.
_INNARDS_LINE = re.compile(
    r"^\s*\d*\s*\|.*$|^\s*\d+:\s+\S.*$|^\s+at\s.*$|^.*(?:stack backtrace:|panicked at"
    r"|RUST_BACKTRACE).*$", re.MULTILINE)


def safe_for_client(text: str) -> str:
    """Codex's words with what a client must not see taken out: file paths, tokens and other
    secrets, quoted file contents, backtraces; URLs lose their query (and any password)."""
    text = _INNARDS_LINE.sub("", text)
    shown = []
    position = 0
    for url in _URL.finditer(text):
        shown.append(_redact(text[position:url.start()]))
        shown.append(_safe_url(url.group()))
        position = url.end()
    shown.append(_redact(text[position:]))
    result = re.sub(r"\n\s*\n+", "\n", "".join(shown)).strip()
    result = "".join(c if c.isprintable() or c in "\n\t" else " " for c in result)
    if len(result) > MAX_SHOWN_CHARS:
        result = result[:MAX_SHOWN_CHARS - 1] + "\u2026"
    return result or "Codex failed without a message."


def _redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return _PATH.sub("<path>", text)


def _safe_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    if scheme.lower() == "file":
        return "<path>"
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    host, slash, path = rest.partition("/")
    host = host.rsplit("@", 1)[-1]  # no user:password@
    return f"{scheme}://{host}{slash}{path}"
