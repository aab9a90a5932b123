#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run the whole suite.
#
#   bash scripts/test.sh            # lint + every test, the opt-in tiers (stress, install) too
#   bash scripts/test.sh -k stream  # extra arguments go to pytest
#
# Creates .venv (the package in editable mode with its test extra) and installs the pinned
# Codex CLI from npm into .tools/codex (both git-ignored; no global install, no sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

CODEX_VERSION=0.169.0
OPENAI_NODE_VERSION=5.23.2
PYTHON=${PYTHON:-python3}

say() { printf '==> %s\n' "$*"; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11 or newer."
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python 3.11 or newer is needed; $PYTHON is $("$PYTHON" --version 2>&1)."

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PYTHON" -m venv .venv
fi
say "installing the package and its test tools into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

codex=.tools/codex/node_modules/.bin/codex
if ! "$codex" --version 2>/dev/null | grep -qx "codex-cli $CODEX_VERSION"; then
  command -v npm >/dev/null || die "npm not found; Node.js 18+ with npm is needed for the Codex CLI."
  say "installing @openai/codex@$CODEX_VERSION into .tools/codex"
  mkdir -p .tools/codex
  npm install --prefix .tools/codex --no-save --no-audit --no-fund --loglevel=error \
    "@openai/codex@$CODEX_VERSION" >/dev/null
fi
say "Codex CLI: $("$codex" --version)"
export CODEX_OPENAI_PROXY_TEST_CODEX="$PWD/$codex"

# The `openai` npm package, the client library Roo Code uses, for the tests that drive the
# proxy the way Roo Code does.
if [ "$(cat .tools/node/node_modules/openai/package.json 2>/dev/null \
      | sed -n 's/^ *"version": "\(.*\)",$/\1/p')" != "$OPENAI_NODE_VERSION" ]; then
  say "installing openai@$OPENAI_NODE_VERSION (npm) into .tools/node"
  mkdir -p .tools/node
  npm install --prefix .tools/node --no-save --no-audit --no-fund --loglevel=error \
    "openai@$OPENAI_NODE_VERSION" >/dev/null
fi
export CODEX_OPENAI_PROXY_TEST_NODE_PATH="$PWD/.tools/node/node_modules"

# `systemd-analyze verify` checks the service unit; Debian's systemd package provides it.
if ! command -v systemd-analyze >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's systemd package (for systemd-analyze)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
  else
    die "systemd-analyze not found; install your distribution's systemd package."
  fi
fi

say "ruff"
.venv/bin/ruff check src tests scripts

say "pytest"
# `-m ""` lifts the default selection (pyproject.toml), which leaves out the slow tiers; a
# `-m` among the extra arguments comes later and wins.
exec .venv/bin/python -m pytest -m "" "$@"
