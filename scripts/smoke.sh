#!/usr/bin/env bash
# Check a running proxy end to end with curl: /healthz, /v1/models, a streamed completion, and
# show the ChatGPT plan's usage limits (/v1/usage).
#
#   bash scripts/smoke.sh [BASE_URL]     default http://127.0.0.1:$PORT/v1 (PORT=11435)
#
# The key and model come from PROXY_API_KEY and CODEX_MODEL, else from the installed env file
# (~/.config/codex-openai-proxy/env), else the defaults (the model: the proxy's default model,
# from /healthz). The completion really runs Codex, so
# it needs Codex logged in; it takes as long as a short answer does (SMOKE_TIMEOUT_S, 120).
# Exits non-zero with one line saying what failed, at the first failure.
set -euo pipefail

ENV_FILE=${XDG_CONFIG_HOME:-$HOME/.config}/codex-openai-proxy/env
from_env_file() {
  [ -f "$ENV_FILE" ] && sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$ENV_FILE" | tail -n 1
}
port=${PORT:-$(from_env_file PORT || true)}
base_url=${1:-http://127.0.0.1:${port:-11435}/v1}
base_url=${base_url%/}
api_key=${PROXY_API_KEY:-$(from_env_file PROXY_API_KEY || true)}
api_key=${api_key:-codex-local-secret}
model=${CODEX_MODEL:-$(from_env_file CODEX_MODEL || true)}
timeout_s=${SMOKE_TIMEOUT_S:-120}

fail() { printf 'smoke: FAIL: %s\n' "$*" >&2; exit 1; }
pass() { printf 'smoke: ok    %s\n' "$*"; }

command -v curl >/dev/null || fail "curl is not installed"
body_file=$(mktemp)
trap 'rm -f "$body_file"' EXIT

# get PATH [curl args...]: the status code; the body lands in $body_file.
request() {
  local path=$1
  shift
  curl -sS -o "$body_file" -w '%{http_code}' --max-time "$timeout_s" "$@" "$base_url$path" \
    2>"$body_file.err" || { local why; why=$(cat "$body_file.err"); rm -f "$body_file.err"
                             fail "cannot reach $base_url$path: $why"; }
  rm -f "$body_file.err"
}

# /healthz sits beside /v1, not under it.
status=$(base_url=${base_url%/v1} request /healthz)
[ "$status" = 200 ] || fail "GET /healthz answered $status: $(head -c 300 "$body_file")"
if grep -q '"found": *false' "$body_file"; then
  # Where the proxy looked (paths) is only in the verbose health, behind the key.
  base_url=${base_url%/v1} request '/healthz?verbose' -H "Authorization: Bearer $api_key" \
    >/dev/null
  fail "the proxy runs but cannot find Codex: $(head -c 400 "$body_file")"
fi
grep -q '"ok": *true' "$body_file" || fail "GET /healthz did not say ok: $(head -c 300 "$body_file")"
pass "GET /healthz"
if [ -z "$model" ] || [ "$model" = default ]; then
  model=$(sed -n 's/.*"default_model": *"\([^"]*\)".*/\1/p' "$body_file")
  [ -n "$model" ] || fail "GET /healthz names no default model: $(head -c 300 "$body_file")"
fi

status=$(request /models -H "Authorization: Bearer $api_key")
[ "$status" = 200 ] || fail "GET /v1/models answered $status: $(head -c 300 "$body_file")"
grep -q "\"id\": *\"$model\"" "$body_file" \
  || fail "GET /v1/models does not list $model: $(head -c 300 "$body_file")"
pass "GET /v1/models lists $model"

status=$(request /chat/completions -N -H "Authorization: Bearer $api_key" \
  -H 'Content-Type: application/json' \
  -d "{\"model\": \"$model\", \"stream\": true, \"stream_options\": {\"include_usage\": true},
       \"messages\": [{\"role\": \"user\", \"content\": \"Reply with the single word: pong\"}]}")
[ "$status" = 200 ] \
  || fail "POST /v1/chat/completions answered $status: $(head -c 300 "$body_file")"
first_event=$(grep -m 1 '^data: ' "$body_file" || true)
[[ $first_event == *'"role":"assistant"'* ]] \
  || fail "the stream did not open with the assistant role chunk: ${first_event:-(no data lines)}"
if grep -q '^data: {"error"' "$body_file"; then
  fail "the stream carried an error: $(grep -m 1 '^data: {"error"' "$body_file" | head -c 300)"
fi
grep -q '"content":"[^"]' "$body_file" || fail "the stream carried no content"
grep -q '"finish_reason":"stop"' "$body_file" || fail "the stream has no finish_reason stop"
[ "$(grep '^data: ' "$body_file" | tail -n 1)" = 'data: [DONE]' ] \
  || fail "the stream did not end with data: [DONE]"
pass "POST /v1/chat/completions streamed an answer: role, content, stop, [DONE]"

# The plan's limits, as Codex reported them with the answer (a ChatGPT login; an API key has
# none). Shown, not judged: a limit nearly used up is no failure of the proxy.
status=$(request /usage -H "Authorization: Bearer $api_key")
[ "$status" = 200 ] || fail "GET /v1/usage answered $status: $(head -c 300 "$body_file")"
limits=$(python3 - "$body_file" <<'PY' 2>/dev/null || true
import json, sys, time
usage = json.load(open(sys.argv[1]))
windows = []
for limit in usage["limits"]:
    for name in ("primary", "secondary"):
        window = limit.get(name)
        if window and window.get("used_percent") is not None:
            minutes = window.get("window_minutes") or 0
            label = {300: "5-hour", 10080: "weekly"}.get(minutes, f"{minutes}-minute")
            reset = window.get("resets_in_seconds")
            after = f", resets in {reset // 3600} h {reset % 3600 // 60} min" if reset else ""
            named = f" ({limit['limit_name']})" if limit.get("limit_name") else ""
            windows.append(f"{label}{named} {window['used_percent']}% used{after}")
if windows:
    plan = f"plan {usage['plan_type']}: " if usage.get("plan_type") else ""
    print(plan + "; ".join(windows))
PY
)
pass "GET /v1/usage: ${limits:-no limits reported (Codex reports them on a ChatGPT login)}"
