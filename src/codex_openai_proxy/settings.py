"""The one settings object, read from command-line flags and environment variables.

Every setting is an environment variable and a flag; a flag wins over the variable, the variable
over the default. A bad value stops the start with one line naming the variable, because the
service usually runs under systemd, where a traceback in the journal helps nobody.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

StreamMode = Literal["incremental", "final"]
EngineName = Literal["exec", "app-server"]


class SettingsError(ValueError):
    """A setting has a value the proxy cannot start with."""


def _port(raw: str) -> int:
    port = _int(raw)
    if not 0 <= port <= 65535:
        raise ValueError("must be a port number from 0 to 65535")
    return port


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("must be a whole number") from None


def _positive_int(raw: str) -> int:
    value = _int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _seconds(raw: str, *, allow_zero: bool) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError("must be a positive number of seconds" + (" or 0" if allow_zero else ""))
    return value


def _positive_seconds(raw: str) -> float:
    return _seconds(raw, allow_zero=False)


def _seconds_or_zero(raw: str) -> float:
    return _seconds(raw, allow_zero=True)


def _megabytes(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("must be a number of megabytes") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number of megabytes")
    return value


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _text(raw: str) -> str:
    return raw.strip()


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be 1 or 0 (true/false, yes/no, on/off)")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        return value

    return parse


def _log_level(raw: str) -> str:
    return _choice("debug", "info", "warning", "error", "critical")(raw).upper()


@dataclass(frozen=True)
class Option:
    """One setting: where it comes from, how it is checked and what it means."""

    attr: str
    env: str
    default: str
    parse: Callable[[str], Any]
    help: str
    boolean: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("host", "HOST", "127.0.0.1", _nonempty, "address to listen on"),
    Option("port", "PORT", "11435", _port, "TCP port to listen on (0 picks a free one)"),
    Option("api_key", "PROXY_API_KEY", "codex-local-secret", _nonempty,
           "the Bearer key clients must send to /v1/*"),
    Option("codex_model", "CODEX_MODEL", "gpt-5", _nonempty,
           "default model, listed first by /v1/models; 'default' lets Codex's own config choose"),
    Option("stream_mode", "PROXY_STREAM_MODE", "incremental", _choice("incremental", "final"),
           "incremental: every agent message as it completes; final: only the last one"),
    Option("engine", "CODEX_ENGINE", "app-server", _choice("exec", "app-server"),
           "how Codex runs: 'exec' (`codex exec --json`, whole messages) or 'app-server' "
           "(`codex app-server`, token by token); one child per request either way"),
    Option("codex_bin", "CODEX_BIN", "codex", _nonempty, "the Codex CLI to run (name or path)"),
    Option("request_timeout_s", "PROXY_REQUEST_TIMEOUT_S", "600", _positive_seconds,
           "longest a Codex run may take, from its start"),
    Option("reply_timeout_s", "PROXY_CODEX_REPLY_TIMEOUT_S", "30", _positive_seconds,
           "longest Codex app-server may take to answer one step of its protocol (initialize, "
           "thread/start, turn/start, turn/interrupt) before the run fails"),
    Option("kill_grace_s", "PROXY_KILL_GRACE_S", "2", _seconds_or_zero,
           "time between SIGINT and SIGKILL when a run is stopped"),
    Option("max_concurrent", "PROXY_MAX_CONCURRENT", "4", _positive_int,
           "Codex children allowed at once"),
    Option("queue_timeout_s", "PROXY_QUEUE_TIMEOUT_S", "30", _seconds_or_zero,
           "longest a request waits for a free slot before a 429"),
    Option("max_body_mb", "PROXY_MAX_BODY_MB", "16", _megabytes,
           "largest request body accepted (413 above)"),
    Option("max_image_mb", "PROXY_MAX_IMAGE_MB", "20", _megabytes,
           "largest decoded inline image accepted (400 above)"),
    Option("codex_login_method", "CODEX_LOGIN_METHOD", "chatgpt", _text,
           "passed as -c forced_login_method=...; empty passes nothing"),
    Option("keepalive_s", "PROXY_KEEPALIVE_S", "15", _positive_seconds,
           "a ': keep-alive' SSE comment after this much silence"),
    Option("write_timeout_s", "PROXY_WRITE_TIMEOUT_S", "60", _positive_seconds,
           "a client that takes none of the response for this long is disconnected and its "
           "Codex run stopped"),
    Option("effort_models", "PROXY_EFFORT_MODELS", "0", _flag,
           "also list model:effort ids such as gpt-5.5:high in /v1/models, each selecting a "
           "model and an effort in one field", boolean=True),
    Option("metrics_public", "PROXY_METRICS_PUBLIC", "0", _flag,
           "serve /metrics without the API key", boolean=True),
    Option("log_level", "PROXY_LOG_LEVEL", "info", _log_level,
           "debug, info, warning, error or critical"),
    Option("access_log", "PROXY_ACCESS_LOG", "", _text,
           "hypercorn access log target: '-' for stderr, a file path, or empty for none"),
    Option("log_bodies", "PROXY_LOG_BODIES", "0", _flag,
           "log prompts and answers at debug level (off: they are never logged)", boolean=True),
)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 11435
    api_key: str = "codex-local-secret"
    codex_model: str = "gpt-5"
    stream_mode: StreamMode = "incremental"
    engine: EngineName = "app-server"
    codex_bin: str = "codex"
    request_timeout_s: float = 600.0
    reply_timeout_s: float = 30.0
    kill_grace_s: float = 2.0
    max_concurrent: int = 4
    queue_timeout_s: float = 30.0
    max_body_mb: float = 16.0
    max_image_mb: float = 20.0
    codex_login_method: str = "chatgpt"
    keepalive_s: float = 15.0
    write_timeout_s: float = 60.0
    effort_models: bool = False
    metrics_public: bool = False
    log_level: str = "INFO"
    access_log: str = ""
    log_bodies: bool = False

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 1024 * 1024)


def _check_table_matches_dataclass() -> None:
    # One table drives flags, variables and docs; a field missing from it would silently be
    # unsettable, so fail at import time instead.
    table = {option.attr for option in OPTIONS}
    declared = {field.name for field in fields(Settings)}
    if table != declared:
        raise AssertionError(f"settings table and Settings differ: {table ^ declared}")


_check_table_matches_dataclass()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codex-openai-proxy",
        description="OpenAI Chat Completions API served by the Codex CLI.",
        epilog="Every flag can also be set by the environment variable shown.",
    )
    for option in OPTIONS:
        kwargs: dict[str, Any] = {
            "dest": option.attr,
            "default": None,
            "help": f"{option.help} [env {option.env}, default {option.default!r}]",
        }
        if option.boolean:
            kwargs.update(nargs="?", const="1", metavar="0|1")
        else:
            kwargs["metavar"] = option.env
        parser.add_argument(option.flag, **kwargs)
    return parser


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Resolve every setting from flags, then the environment, then the default."""
    given = vars(build_parser().parse_args(list(argv)))
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = given[option.attr]
        source = f"{option.env} ({option.flag})" if raw is not None else option.env
        if raw is None:
            raw = environ.get(option.env, option.default)
        try:
            values[option.attr] = option.parse(raw)
        except ValueError as error:
            raise SettingsError(f"invalid {source}={raw!r}: {error}") from None
    return Settings(**values)
