"""Outside text in log lines: escaped, cut, and never more than the one line it claims to be;
and Codex's warnings, which quote what clients send, remembered within a bound."""

from __future__ import annotations

import logging

import pytest

from codex_openai_proxy.codex_events import Notice
from codex_openai_proxy.log_text import MAX_LOGGED_CHARS, log_safe
from codex_openai_proxy.runs import MAX_REMEMBERED_WARNINGS, NoticeLog


@pytest.mark.parametrize(("text", "logged"), [
    ("gpt-5", "gpt-5"),
    ("modèle 😀", "modèle 😀"),
    ("a\nb\r\nc\td", "a\\nb\\r\\nc\\td"),
    ("nul\x00here", "nul\\x00here"),
    ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
    ("\x7f\x85", "\\x7f\\x85"),
    ("rtl\u202eevil", "rtl\\u202eevil"),
    ("sep\u2028line", "sep\\u2028line"),
    ("lone\ud800", "lone\\ud800"),
    ("tag\U000e0041", "tag\\U000e0041"),
])
def test_non_printable_characters_are_escaped(text: str, logged: str) -> None:
    assert log_safe(text) == logged


def test_long_text_is_cut_and_says_how_much_is_left_out() -> None:
    logged = log_safe("x" * 5000 + "\n")
    assert logged == "x" * MAX_LOGGED_CHARS + "... (4,001 more characters)"
    assert log_safe("y" * 10, limit=None) == "y" * 10


def test_codex_warnings_are_logged_once_each_escaped(caplog) -> None:
    notices = NoticeLog()
    with caplog.at_level(logging.DEBUG, logger="codex_openai_proxy"):
        for _ in range(3):
            notices.log(1, Notice("warning", "Model metadata for `a\nFORGED LINE` not found."))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Codex says: Model metadata for `a\\nFORGED LINE` not found."]


def test_the_remembered_warnings_stay_bounded(caplog) -> None:
    # Each distinct model name makes a distinct warning (issue 17: 110 model names of 1 MB
    # took the proxy from 47 to 169 MB); the memory of them is bounded, and so is each line.
    notices = NoticeLog()
    with caplog.at_level(logging.WARNING, logger="codex_openai_proxy"):
        for number in range(1000):
            notices.log(number, Notice("warning", f"Model metadata for `m{number}` not found."
                                       + "!" * 5000))
            assert len(notices) <= MAX_REMEMBERED_WARNINGS
    assert len(notices) == MAX_REMEMBERED_WARNINGS
    assert max(len(record.getMessage()) for record in caplog.records) < MAX_LOGGED_CHARS + 100
