"""The one settings object, read from command-line flags and environment variables.

Every setting is an environment variable and a flag; a flag wins over the variable, the variable
over the default. A bad value stops the start with one line naming the variable, because the
service usually runs under systemd, where a traceback in the journal helps nobody.
"""

from __future__ import annotations

import argparse
import math
import shlex
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


def _count(raw: str) -> int:
    value = _int(raw)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


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


def _megapixels(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("must be a number of megapixels") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number of megapixels")
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


def _overrides(raw: str) -> tuple[str, ...]:
    """Space-separated `key=value` Codex config overrides (shell-quoted where a value has
    spaces): each becomes a `-c key=value`."""
    try:
        items = tuple(shlex.split(raw))
    except ValueError as error:
        raise ValueError(f"cannot be split into key=value items: {error}") from None
    for item in items:
        key, equals, _ = item.partition("=")
        if not equals or not key:
            raise ValueError(f"{item!r} is not key=value")
    return items


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
    Option("codex_model", "CODEX_MODEL", "", _text,
           "the model of requests that name none, listed first by /v1/models; empty (or "
           "'default'): the model of your Codex config, else Codex's catalog's first"),
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
    Option("warm_children", "PROXY_WARM_CHILDREN", "2", _count,
           "app-server children kept started and initialized ahead of demand (0: none)"),
    Option("queue_timeout_s", "PROXY_QUEUE_TIMEOUT_S", "30", _seconds_or_zero,
           "longest a request waits for a free slot before a 429"),
    Option("max_body_mb", "PROXY_MAX_BODY_MB", "16", _megabytes,
           "largest request body accepted (413 above)"),
    Option("max_image_mb", "PROXY_MAX_IMAGE_MB", "20", _megabytes,
           "largest decoded inline image accepted (400 above)"),
    Option("max_image_megapixels", "PROXY_MAX_IMAGE_MEGAPIXELS", "50", _megapixels,
           "most pixels an inline image may have, read from its header (400 above): Codex "
           "decodes every image in full, at 4 bytes a pixel or more"),
    Option("max_images_mb", "PROXY_MAX_IMAGES_MB", "64", _megabytes,
           "largest total of decoded inline images in one request (400 above)"),
    Option("codex_login_method", "CODEX_LOGIN_METHOD", "chatgpt", _text,
           "passed as -c forced_login_method=...; empty passes nothing"),
    Option("codex_config", "PROXY_CODEX_CONFIG", "", _overrides,
           "Codex config overrides for the app-server children, applied after the proxy's own "
           "(so they win): space-separated key=value items, e.g. 'features.hooks=true'"),
    Option("reasoning_summary", "PROXY_REASONING_SUMMARY", "auto",
           _choice("auto", "concise", "detailed", "none"),
           "reasoning summaries asked of the model (app-server), sent as reasoning_content"),
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
    codex_model: str = ""
    stream_mode: StreamMode = "incremental"
    engine: EngineName = "app-server"
    codex_bin: str = "codex"
    request_timeout_s: float = 600.0
    reply_timeout_s: float = 30.0
    kill_grace_s: float = 2.0
    max_concurrent: int = 4
    warm_children: int = 2
    queue_timeout_s: float = 30.0
    max_body_mb: float = 16.0
    max_image_mb: float = 20.0
    max_image_megapixels: float = 50.0
    max_images_mb: float = 64.0
    codex_login_method: str = "chatgpt"
    codex_config: tuple[str, ...] = ()
    reasoning_summary: str = "auto"
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

    @property
    def max_image_pixels(self) -> int:
        return int(self.max_image_megapixels * 1_000_000)

    @property
    def max_images_bytes(self) -> int:
        return int(self.max_images_mb * 1024 * 1024)


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
    parser.add_argument("--print-default-model", action="store_true",
                        help="print the model requests that name none will run (CODEX_MODEL, "
                             "or Codex's own default), and exit")
    return parser


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Resolve every setting from flags, then the environment, then the default."""
    given = vars(build_parser().parse_args(list(argv)))
    given.pop("print_default_model")  # an action, not a setting
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
