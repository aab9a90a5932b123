#!/usr/bin/env bash
# Install codex-openai-proxy for this user and start it in the foreground.
#
#   bash scripts/install.sh [proxy flags...]    e.g. --port 11436
#
# Installs into its own venv under ~/.local/share/codex-openai-proxy (no sudo, nothing global),
# then runs the proxy in this terminal until Ctrl-C. Settings come from the environment or
# flags; see the README's configuration table.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PREFIX=${CODEX_OPENAI_PROXY_HOME:-$HOME/.local/share/codex-openai-proxy}

say() { printf '==> %s\n' "$*"; }
die() { printf 'scripts/install.sh: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11 or newer."
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python 3.11 or newer is needed; $PYTHON is $("$PYTHON" --version 2>&1)."

if [ ! -x "$PREFIX/venv/bin/python" ]; then
  say "creating $PREFIX/venv"
  mkdir -p "$PREFIX"
  "$PYTHON" -m venv "$PREFIX/venv"
fi
say "installing codex-openai-proxy into $PREFIX/venv"
"$PREFIX/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$PREFIX/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade .

if ! command -v "${CODEX_BIN:-codex}" >/dev/null; then
  printf '\nWarning: the Codex CLI (%s) was not found. Install it with `npm i -g @openai/codex`\n' \
    "${CODEX_BIN:-codex}"
  printf 'and log in with `codex login`; until then requests get a 503 saying so.\n\n'
fi

cat <<EOT

Roo Code settings (API Provider "OpenAI Compatible"):
  Base URL: http://${HOST:-127.0.0.1}:${PORT:-11435}/v1
  API Key:  ${PROXY_API_KEY:-codex-local-secret}
  Model:    ${CODEX_MODEL:-gpt-5}

Starting the proxy in the foreground (Ctrl-C stops it).
EOT
exec "$PREFIX/venv/bin/codex-openai-proxy" "$@"
