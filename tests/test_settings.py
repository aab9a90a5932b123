"""Unit tests for settings.py: flags, environment variables, defaults and bad values."""

from __future__ import annotations

import pytest

from codex_openai_proxy.settings import OPTIONS, Settings, SettingsError, load_settings


def test_defaults_without_flags_or_environment() -> None:
    settings = load_settings([], {})
    assert settings == Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 11435
    assert settings.api_key == "codex-local-secret"
    assert settings.codex_model == ""  # Codex's own default, found at start-up
    assert settings.stream_mode == "incremental"
    assert settings.engine == "app-server"
    assert settings.codex_bin == "codex"
    assert settings.request_timeout_s == 600.0
    assert settings.kill_grace_s == 2.0
    assert settings.max_concurrent == 4
    assert settings.queue_timeout_s == 30.0
    assert settings.max_body_mb == 16.0
    assert settings.max_image_mb == 20.0
    assert settings.codex_login_method == "chatgpt"
    assert settings.keepalive_s == 15.0
    assert settings.log_level == "INFO"
    assert settings.access_log == ""
    assert settings.log_bodies is False


def test_table_defaults_agree_with_dataclass_defaults() -> None:
    # The table's default strings, parsed, must give the dataclass defaults.
    defaults = Settings()
    for option in OPTIONS:
        assert option.parse(option.default) == getattr(defaults, option.attr), option.env


def test_every_option_has_a_distinct_env_and_flag() -> None:
    envs = [option.env for option in OPTIONS]
    flags = [option.flag for option in OPTIONS]
    assert len(set(envs)) == len(envs)
    assert len(set(flags)) == len(flags)


@pytest.mark.parametrize(
    ("env", "raw", "attr", "expected"),
    [
        ("HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("HOST", "  ::1 ", "host", "::1"),
        ("PORT", "8080", "port", 8080),
        ("PORT", "0", "port", 0),
        ("PORT", "65535", "port", 65535),
        ("PORT", " 9000 ", "port", 9000),
        ("PROXY_API_KEY", "sk-abc", "api_key", "sk-abc"),
        ("CODEX_MODEL", "gpt-5-codex", "codex_model", "gpt-5-codex"),
        ("PROXY_STREAM_MODE", "final", "stream_mode", "final"),
        ("PROXY_STREAM_MODE", "FINAL", "stream_mode", "final"),
        ("CODEX_ENGINE", "exec", "engine", "exec"),
        ("CODEX_ENGINE", "App-Server", "engine", "app-server"),
        ("CODEX_BIN", "/opt/codex/bin/codex", "codex_bin", "/opt/codex/bin/codex"),
        ("PROXY_REQUEST_TIMEOUT_S", "12.5", "request_timeout_s", 12.5),
        ("PROXY_KILL_GRACE_S", "0", "kill_grace_s", 0.0),
        ("PROXY_KILL_GRACE_S", "0.25", "kill_grace_s", 0.25),
        ("PROXY_MAX_CONCURRENT", "1", "max_concurrent", 1),
        ("PROXY_QUEUE_TIMEOUT_S", "0", "queue_timeout_s", 0.0),
        ("PROXY_MAX_BODY_MB", "0.5", "max_body_mb", 0.5),
        ("PROXY_MAX_IMAGE_MB", "3", "max_image_mb", 3.0),
        ("CODEX_LOGIN_METHOD", "api", "codex_login_method", "api"),
        ("CODEX_LOGIN_METHOD", "", "codex_login_method", ""),
        ("CODEX_LOGIN_METHOD", "   ", "codex_login_method", ""),
        ("PROXY_KEEPALIVE_S", "1", "keepalive_s", 1.0),
        ("PROXY_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("PROXY_LOG_LEVEL", "Warning", "log_level", "WARNING"),
        ("PROXY_LOG_LEVEL", "critical", "log_level", "CRITICAL"),
        ("PROXY_ACCESS_LOG", "-", "access_log", "-"),
        ("PROXY_ACCESS_LOG", "/var/log/proxy.log", "access_log", "/var/log/proxy.log"),
        ("PROXY_LOG_BODIES", "1", "log_bodies", True),
        ("PROXY_LOG_BODIES", "true", "log_bodies", True),
        ("PROXY_LOG_BODIES", "YES", "log_bodies", True),
        ("PROXY_LOG_BODIES", "on", "log_bodies", True),
        ("PROXY_LOG_BODIES", "0", "log_bodies", False),
        ("PROXY_LOG_BODIES", "false", "log_bodies", False),
        ("PROXY_LOG_BODIES", "no", "log_bodies", False),
        ("PROXY_LOG_BODIES", "off", "log_bodies", False),
        ("PROXY_LOG_BODIES", "", "log_bodies", False),
    ],
)
def test_environment_values_are_parsed(env: str, raw: str, attr: str, expected: object) -> None:
    settings = load_settings([], {env: raw})
    value = getattr(settings, attr)
    assert value == expected
    assert type(value) is type(expected)


def test_unrelated_environment_variables_are_ignored() -> None:
    assert load_settings([], {"PATH": "/bin", "port": "1", "Host": "x"}) == Settings()


@pytest.mark.parametrize(
    ("flag", "raw", "attr", "expected"),
    [
        ("--host", "10.0.0.1", "host", "10.0.0.1"),
        ("--port", "1234", "port", 1234),
        ("--api-key", "k", "api_key", "k"),
        ("--codex-model", "o3", "codex_model", "o3"),
        ("--stream-mode", "final", "stream_mode", "final"),
        ("--engine", "exec", "engine", "exec"),
        ("--codex-bin", "/x/codex", "codex_bin", "/x/codex"),
        ("--request-timeout-s", "5", "request_timeout_s", 5.0),
        ("--kill-grace-s", "1", "kill_grace_s", 1.0),
        ("--max-concurrent", "9", "max_concurrent", 9),
        ("--queue-timeout-s", "2", "queue_timeout_s", 2.0),
        ("--max-body-mb", "1", "max_body_mb", 1.0),
        ("--max-image-mb", "2", "max_image_mb", 2.0),
        ("--codex-login-method", "api", "codex_login_method", "api"),
        ("--keepalive-s", "3", "keepalive_s", 3.0),
        ("--log-level", "error", "log_level", "ERROR"),
        ("--access-log", "-", "access_log", "-"),
        ("--log-bodies", "1", "log_bodies", True),
    ],
)
def test_flags_are_parsed(flag: str, raw: str, attr: str, expected: object) -> None:
    assert getattr(load_settings([flag, raw], {}), attr) == expected
    assert getattr(load_settings([f"{flag}={raw}"], {}), attr) == expected


def test_log_bodies_flag_without_value_turns_it_on() -> None:
    assert load_settings(["--log-bodies"], {}).log_bodies is True
    assert load_settings(["--log-bodies", "0"], {"PROXY_LOG_BODIES": "1"}).log_bodies is False


def test_flag_beats_environment_beats_default() -> None:
    environ = {"PORT": "2000", "CODEX_MODEL": "env-model", "PROXY_STREAM_MODE": "final"}
    settings = load_settings(["--port", "3000"], environ)
    assert settings.port == 3000  # flag over variable
    assert settings.codex_model == "env-model"  # variable over default
    assert settings.stream_mode == "final"
    assert settings.host == "127.0.0.1"  # default when neither is given


def test_flag_wins_even_over_a_bad_environment_value() -> None:
    # The variable is never looked at when the flag is given.
    settings = load_settings(["--port", "3000"], {"PORT": "not-a-port"})
    assert settings.port == 3000


def test_byte_limits_are_mebibytes() -> None:
    settings = load_settings([], {"PROXY_MAX_BODY_MB": "2", "PROXY_MAX_IMAGE_MB": "0.5"})
    assert settings.max_body_bytes == 2 * 1024 * 1024
    assert settings.max_image_bytes == 512 * 1024
    assert Settings().max_image_bytes == 20 * 1024 * 1024


@pytest.mark.parametrize(
    ("env", "raw", "reason"),
    [
        ("HOST", "", "must not be empty"),
        ("HOST", "   ", "must not be empty"),
        ("PORT", "abc", "must be a whole number"),
        ("PORT", "", "must be a whole number"),
        ("PORT", "80.5", "must be a whole number"),
        ("PORT", "-1", "must be a port number from 0 to 65535"),
        ("PORT", "65536", "must be a port number from 0 to 65535"),
        ("PROXY_API_KEY", "", "must not be empty"),
        ("PROXY_STREAM_MODE", "partial", "must be one of incremental, final"),
        ("CODEX_ENGINE", "appserver", "must be one of exec, app-server"),
        ("CODEX_ENGINE", "", "must be one of exec, app-server"),
        ("CODEX_BIN", "", "must not be empty"),
        ("PROXY_REQUEST_TIMEOUT_S", "soon", "must be a number of seconds"),
        ("PROXY_REQUEST_TIMEOUT_S", "0", "must be a positive number of seconds"),
        ("PROXY_REQUEST_TIMEOUT_S", "-5", "must be a positive number of seconds"),
        ("PROXY_REQUEST_TIMEOUT_S", "inf", "must be a positive number of seconds"),
        ("PROXY_REQUEST_TIMEOUT_S", "nan", "must be a positive number of seconds"),
        ("PROXY_KILL_GRACE_S", "-1", "must be a positive number of seconds or 0"),
        ("PROXY_KILL_GRACE_S", "nan", "must be a positive number of seconds or 0"),
        ("PROXY_KILL_GRACE_S", "x", "must be a number of seconds"),
        ("PROXY_MAX_CONCURRENT", "0", "must be at least 1"),
        ("PROXY_MAX_CONCURRENT", "-3", "must be at least 1"),
        ("PROXY_MAX_CONCURRENT", "2.5", "must be a whole number"),
        ("PROXY_MAX_CONCURRENT", "many", "must be a whole number"),
        ("PROXY_QUEUE_TIMEOUT_S", "-0.1", "must be a positive number of seconds or 0"),
        ("PROXY_QUEUE_TIMEOUT_S", "infinity", "must be a positive number of seconds or 0"),
        ("PROXY_MAX_BODY_MB", "0", "must be a positive number of megabytes"),
        ("PROXY_MAX_BODY_MB", "-1", "must be a positive number of megabytes"),
        ("PROXY_MAX_BODY_MB", "inf", "must be a positive number of megabytes"),
        ("PROXY_MAX_BODY_MB", "big", "must be a number of megabytes"),
        ("PROXY_MAX_IMAGE_MB", "0", "must be a positive number of megabytes"),
        ("PROXY_MAX_IMAGE_MB", "nan", "must be a positive number of megabytes"),
        ("PROXY_KEEPALIVE_S", "0", "must be a positive number of seconds"),
        ("PROXY_LOG_LEVEL", "verbose", "must be one of debug, info, warning, error, critical"),
        ("PROXY_LOG_LEVEL", "", "must be one of debug, info, warning, error, critical"),
        ("PROXY_LOG_BODIES", "maybe", "must be 1 or 0"),
        ("PROXY_LOG_BODIES", "2", "must be 1 or 0"),
    ],
)
def test_bad_environment_value_names_the_variable(env: str, raw: str, reason: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings([], {env: raw})
    message = str(caught.value)
    assert message.startswith(f"invalid {env}={raw!r}: ")
    assert reason in message
    assert "\n" not in message  # one line, for the journal


@pytest.mark.parametrize(
    ("flag", "env", "raw"),
    [
        ("--port", "PORT", "99999"),
        ("--max-concurrent", "PROXY_MAX_CONCURRENT", "0"),
        ("--stream-mode", "PROXY_STREAM_MODE", "sometimes"),
        ("--log-bodies", "PROXY_LOG_BODIES", "perhaps"),
        ("--host", "HOST", ""),
    ],
)
def test_bad_flag_value_names_both_variable_and_flag(flag: str, env: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=r"^invalid ") as caught:
        load_settings([flag, raw], {})
    assert str(caught.value).startswith(f"invalid {env} ({flag})={raw!r}: ")


def test_settings_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        load_settings([], {"PORT": "x"})


def test_settings_are_immutable() -> None:
    settings = load_settings([], {})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
