"""Text from outside the proxy made fit for one log line (pure).

Whatever a client sends (a URL path, a model name, a prompt) or Codex prints (its warnings
quote the model) can hold newlines, NULs or ANSI escapes. Written raw, these forge log lines,
rewrite the operator's terminal or split journald records; a megabyte of it floods the log.
So every such value is logged through `log_safe`: cut to a length, then every character that
is not printable shown as an escape (`\\n`, `\\x1b`, `\\u202e`), so that each record stays the
one line it claims to be, and says exactly what was sent.
"""

from __future__ import annotations

#: The longest piece of outside text one log line quotes.
MAX_LOGGED_CHARS = 1000

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def log_safe(text: str, limit: int | None = MAX_LOGGED_CHARS) -> str:
    """`text` cut to `limit` characters (None: whole), non-printable characters escaped."""
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit:,} more characters)"
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    if named := _NAMED_ESCAPES.get(char):
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
