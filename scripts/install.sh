#!/usr/bin/env bash
# Install codex-openai-proxy for this user (no sudo) and start it as a systemd user service.
#
#   bash scripts/install.sh                 install or upgrade, then start the service
#   bash scripts/install.sh --foreground    install or upgrade, then run in this terminal
#   bash scripts/install.sh --no-systemd    install or upgrade only
#   bash scripts/install.sh --uninstall     remove what this script added, nothing else
#
# What it adds:
#   ~/.local/share/codex-openai-proxy/venv   the proxy, in its own virtualenv
#   ~/.local/share/codex-openai-proxy/npm    the Codex CLI, only if `codex` was not found
#   ~/.config/codex-openai-proxy/env         settings (written once; your edits are kept)
#   ~/.config/systemd/user/codex-openai-proxy.service
#
# Settings for a first install can be given in the environment, e.g.
#   PORT=11436 PROXY_API_KEY=s3cret bash scripts/install.sh
# and go into the env file; later runs add only the keys it lacks. Arguments after `--` are
# passed to the proxy with --foreground (e.g. `-- --log-level debug`).
set -euo pipefail
cd "$(dirname "$0")/.."

# The Codex CLI this version of the proxy is tested against, installed when none is found.
CODEX_NPM_PACKAGE=${CODEX_NPM_PACKAGE:-@openai/codex@0.169.0}
PYTHON=${PYTHON:-python3}
SERVICE=codex-openai-proxy.service

DATA_DIR=${CODEX_OPENAI_PROXY_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/codex-openai-proxy}
CONFIG_DIR=${XDG_CONFIG_HOME:-$HOME/.config}/codex-openai-proxy
ENV_FILE=$CONFIG_DIR/env
UNIT_DIR=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
VENV=$DATA_DIR/venv
NPM_PREFIX=$DATA_DIR/npm
# The checksum of the env file as this script wrote it: --uninstall removes the file only if
# it is unchanged, so a user's edits (their key, their port) are never thrown away.
ENV_SUM=$DATA_DIR/env.sha256

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'scripts/install.sh: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,19s/^# \{0,1\}//p' "$0"; }

mode=service
proxy_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --foreground) mode=foreground ;;
    --no-systemd) mode=files ;;
    --uninstall) mode=uninstall ;;
    -h | --help) usage; exit 0 ;;
    --) shift; proxy_args=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

have_user_systemd() {
  command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1
}

uninstall() {
  if [ -e "$UNIT_DIR/$SERVICE" ]; then
    if have_user_systemd; then
      say "stopping and disabling $SERVICE"
      systemctl --user disable --now "$SERVICE" >/dev/null 2>&1 || true
    fi
    rm -f "$UNIT_DIR/$SERVICE"
    have_user_systemd && systemctl --user daemon-reload || true
    note "removed $UNIT_DIR/$SERVICE"
  fi
  if [ -f "$ENV_FILE" ]; then
    if [ -f "$ENV_SUM" ] && sha256sum --status -c "$ENV_SUM" 2>/dev/null; then
      rm -f "$ENV_FILE"
      rmdir "$CONFIG_DIR" 2>/dev/null || true
      note "removed $ENV_FILE"
    else
      note "kept $ENV_FILE: it was edited after install (delete it yourself if you wish)"
    fi
  fi
  for path in "$VENV" "$NPM_PREFIX"; do
    if [ -e "$path" ]; then
      rm -rf "$path"
      note "removed $path"
    fi
  done
  rm -f "$ENV_SUM"
  rmdir "$DATA_DIR" 2>/dev/null || true
  say "uninstalled. Codex itself and its login (~/.codex) were not touched."
}

if [ "$mode" = uninstall ]; then
  uninstall
  exit 0
fi

# --- what this machine has -----------------------------------------------------------------

missing=()
if ! command -v "$PYTHON" >/dev/null; then
  missing+=("Python 3.11 or newer ($PYTHON not found; set PYTHON=/path/to/python3.11 if it is elsewhere)")
elif ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  missing+=("Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1 || true); set PYTHON=/path/to/python3.11)")
fi

# Which Codex to run: CODEX_BIN if given, else the env file's, else `codex` on PATH, else
# the copy this script installed. Always an absolute path: services get a short PATH.
env_value() { [ -f "$ENV_FILE" ] && sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$ENV_FILE" | tail -n 1; }
codex_bin=${CODEX_BIN:-$(env_value CODEX_BIN || true)}
if [ -n "$codex_bin" ] && [ "$codex_bin" != "$NPM_PREFIX/bin/codex" ]; then
  resolved=$(command -v "$codex_bin" || true)
  if [ -z "$resolved" ]; then
    [ -n "${CODEX_BIN:-}" ] && from="the environment" || from=$ENV_FILE
    die "CODEX_BIN=$codex_bin (from $from) is not an executable."
  fi
  codex_bin=$resolved
elif [ -z "$codex_bin" ] && command -v codex >/dev/null; then
  codex_bin=$(command -v codex)
fi
install_codex=no
if [ -z "$codex_bin" ] || [ "$codex_bin" = "$NPM_PREFIX/bin/codex" ]; then
  install_codex=yes
fi

# The npm `codex` is a Node script: Node is needed to run it, npm to install it.
node_needed=$install_codex
if [ -n "$codex_bin" ] && head -c 200 "$codex_bin" 2>/dev/null | head -n 1 | grep -q node; then
  node_needed=yes
fi
if [ "$node_needed" = yes ]; then
  if ! command -v node >/dev/null; then
    missing+=("Node.js 18 or newer (node not found), which the Codex CLI runs on")
  elif ! node -e 'process.exit(parseInt(process.versions.node) < 18 ? 1 : 0)'; then
    missing+=("Node.js 18 or newer (node is $(node --version))")
  fi
  if [ "$install_codex" = yes ] && ! command -v npm >/dev/null; then
    missing+=("npm (comes with Node.js), to install the Codex CLI")
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  printf 'scripts/install.sh: this machine lacks:\n' >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

# --- the proxy ---------------------------------------------------------------------------------

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  mkdir -p "$DATA_DIR"
  "$PYTHON" -m venv "$VENV" \
    || die "could not create a virtualenv (on Debian/Ubuntu: apt install python3-venv)."
fi
say "installing codex-openai-proxy from $PWD into $VENV"
# --upgrade: a re-run installs this checkout over the previous one.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade . \
  || die "pip could not install the proxy (see above)."

# --- the Codex CLI ----------------------------------------------------------------------------

if [ "$install_codex" = yes ]; then
  wanted=${CODEX_NPM_PACKAGE##*@}
  if [ -x "$NPM_PREFIX/bin/codex" ] \
      && "$NPM_PREFIX/bin/codex" --version 2>/dev/null | grep -qx "codex-cli $wanted"; then
    note "Codex CLI $wanted already in $NPM_PREFIX"
  else
    say "installing the Codex CLI ($CODEX_NPM_PACKAGE) into $NPM_PREFIX"
    # --global with a prefix: npm's own layout for a user install (bin/ and lib/ under it).
    npm install --global --prefix "$NPM_PREFIX" --no-audit --no-fund --no-update-notifier \
      --loglevel=error \
      "$CODEX_NPM_PACKAGE" >/dev/null || die "npm could not install $CODEX_NPM_PACKAGE."
  fi
  codex_bin=$NPM_PREFIX/bin/codex
fi
note "Codex CLI: $codex_bin ($("$codex_bin" --version 2>/dev/null || echo 'version unknown'))"

# --- settings ---------------------------------------------------------------------------------

# A key goes in only if the file lacks it, so re-runs never undo an edit.
write_setting() {
  local key=$1 value=$2 given=${3:-}
  if ! grep -q "^$key=" "$ENV_FILE" 2>/dev/null; then
    printf '%s="%s"\n' "$key" "$value" >> "$ENV_FILE"
    added_keys+=("$key")
  elif [ -n "$given" ] && [ "$(env_value "$key")" != "$value" ]; then
    note "kept $key=$(env_value "$key") from $ENV_FILE (edit the file to change it)"
  fi
}

mkdir -p "$CONFIG_DIR"
env_state=edited
if [ ! -f "$ENV_FILE" ]; then
  env_state=new
  ( umask 077 && cat > "$ENV_FILE" <<'EOT'
# codex-openai-proxy settings, read by the systemd service (and by install.sh --foreground).
# One KEY="value" per line; every setting is listed in the README. Restart the service after
# editing: systemctl --user restart codex-openai-proxy
EOT
  )
elif [ -f "$ENV_SUM" ] && sha256sum --status -c "$ENV_SUM" 2>/dev/null; then
  env_state=as_written
fi
node_dir=$(command -v node >/dev/null && dirname "$(command -v node)" || true)
service_path=$PATH
case ":$service_path:" in *":$node_dir:"*) ;; *) service_path=$node_dir:$service_path ;; esac
added_keys=()
write_setting HOST "${HOST:-127.0.0.1}" "${HOST:-}"
write_setting PORT "${PORT:-11435}" "${PORT:-}"
write_setting PROXY_API_KEY "${PROXY_API_KEY:-codex-local-secret}" "${PROXY_API_KEY:-}"
# Empty: the model of the user's Codex config, else the first of Codex's own catalog.
write_setting CODEX_MODEL "${CODEX_MODEL:-}" "${CODEX_MODEL:-}"
write_setting CODEX_BIN "$codex_bin" "${CODEX_BIN:-}"
# The npm `codex` finds `node` on PATH: give the service the PATH this script ran with.
write_setting PATH "$service_path"
case $env_state in
  new) note "wrote $ENV_FILE" ;;
  *) if [ ${#added_keys[@]} -gt 0 ]; then
       note "added ${added_keys[*]} to $ENV_FILE (the rest is as you left it)"
     else
       note "kept $ENV_FILE as it is"
     fi ;;
esac
# Only a file this script wrote, and nobody edited since, may be removed by --uninstall.
if [ "$env_state" != edited ]; then
  mkdir -p "$DATA_DIR"
  sha256sum "$ENV_FILE" > "$ENV_SUM"
fi

# Settings as the proxy will see them, for the messages below.
# shellcheck disable=SC1090
set -a && . "$ENV_FILE" && set +a
base_url="http://${HOST}:${PORT}/v1"
[ "$HOST" = 0.0.0.0 ] && base_url="http://127.0.0.1:${PORT}/v1"

roo_settings() {
  local model
  model=$("$VENV/bin/codex-openai-proxy" --print-default-model 2>/dev/null) || model=$CODEX_MODEL
  cat <<EOT

Roo Code settings (API Provider "OpenAI Compatible"):
  Base URL: $base_url
  API Key:  $PROXY_API_KEY
  Model:    ${model:-(the first model /v1/models lists)}
EOT
}

login_reminder() {
  if ! "$CODEX_BIN" login status >/dev/null 2>&1; then
    cat <<EOT

Codex has no credentials yet. Log in once, as this user, with:
  $CODEX_BIN login
EOT
  fi
}

if [ "$mode" = foreground ]; then
  roo_settings
  login_reminder
  printf '\nStarting the proxy in the foreground (Ctrl-C stops it).\n'
  exec "$VENV/bin/codex-openai-proxy" "${proxy_args[@]}"
fi

if [ "$mode" = files ]; then
  cat <<EOT

Installed, not started (--no-systemd). Run it with:
  set -a; . $ENV_FILE; set +a; $VENV/bin/codex-openai-proxy
EOT
  roo_settings
  login_reminder
  exit 0
fi

# --- the service ------------------------------------------------------------------------------

if ! have_user_systemd; then
  cat <<EOT

There is no systemd user session here (common in containers and some WSL setups), so the
proxy was installed but not set up as a service. Run it in this terminal instead with:
  bash scripts/install.sh --foreground
EOT
  login_reminder
  exit 0
fi

say "installing $UNIT_DIR/$SERVICE"
mkdir -p "$UNIT_DIR"
unit=$(cat systemd/$SERVICE)
# The unit names the default places through %h; point it elsewhere if they were moved.
if [ "$DATA_DIR" != "$HOME/.local/share/codex-openai-proxy" ]; then
  unit=${unit//%h\/.local\/share\/codex-openai-proxy/$DATA_DIR}
fi
if [ "$CONFIG_DIR" != "$HOME/.config/codex-openai-proxy" ]; then
  unit=${unit//%h\/.config\/codex-openai-proxy/$CONFIG_DIR}
fi
printf '%s\n' "$unit" > "$UNIT_DIR/$SERVICE"
systemctl --user daemon-reload
systemctl --user enable "$SERVICE" >/dev/null 2>&1
say "(re)starting $SERVICE"
systemctl --user restart "$SERVICE"

health_url="${base_url%/v1}/healthz"
for _ in $(seq 1 100); do
  if "$VENV/bin/python" - "$health_url" <<'EOT' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1).read()
EOT
  then
    say "the proxy is up: $health_url"
    roo_settings
    login_reminder
    printf '\nLogs: journalctl --user -u %s -f\n' "${SERVICE%.service}"
    exit 0
  fi
  sleep 0.2
done
printf 'scripts/install.sh: the service did not answer %s within 20 s. Its log:\n' \
  "$health_url" >&2
journalctl --user -u "$SERVICE" -n 20 --no-pager >&2 || true
exit 1
