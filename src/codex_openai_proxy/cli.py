"""`codex-openai-proxy`: read the settings, set up logging, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import trio

from .server import default_model, serve_proxy
from .settings import SettingsError, build_parser, load_settings


def _find_os_error(error: BaseException) -> OSError | None:
    """The OSError inside `error`, which trio's nurseries may have wrapped in groups."""
    if isinstance(error, OSError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := _find_os_error(inner)) is not None:
                return found
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        settings = load_settings(argv, os.environ)
    except SettingsError as error:
        print(f"codex-openai-proxy: {error}", file=sys.stderr)
        return 2
    # Read from the parser, as the settings are: argparse also takes an abbreviation.
    if build_parser().parse_args(argv).print_default_model:
        logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
        print(trio.run(default_model, settings, os.environ))
        return 0
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        trio.run(serve_proxy, settings)
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 130
    except BaseException as error:
        os_error = _find_os_error(error)
        if os_error is None:
            raise
        # Most often the port is taken; a one-line reason serves systemd's journal best.
        print(f"codex-openai-proxy: cannot serve on {settings.host}:{settings.port}: "
              f"{os_error.strerror or os_error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
