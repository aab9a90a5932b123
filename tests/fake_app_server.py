"""`codex app-server` as tests/fake_codex.py plays it: JSON-RPC over stdio, codex-cli 0.169.0.

The messages have the shapes the real 0.169.0 prints (captured against tests/mock_responses.py):
the `initialize` result, `thread/start`'s and `thread/resume`'s `{thread: {id, ...}}` (a resumed
thread is read from its rollout file in CODEX_HOME, as the real one does: instructions, dynamic
tools and history), `turn/started` before
`turn/start`'s result, `item/started` / `item/reasoning/summaryTextDelta` /
`item/agentMessage/delta` / `item/completed`, `thread/tokenUsage/updated` with camelCase counts,
`error` with `willRetry`, `turn/completed` with the turn's status; a call to a dynamic tool as
the unanswered `item/tool/call` request, with the model's `function_call` item and the
`token_usage_record` appended to the rollout file (a resumed thread says neither on stdout);
`turn/interrupt` answered `{}` and the turn completed as `interrupted`.

The scenario (FAKE_CODEX_SCENARIO, or `fake-scenario:NAME` in the turn's text) decides what the
turn does; the names are those of `codex exec`'s scenarios, plus:

  tool_call          call the first dynamic tool with FAKE_CODEX_TOOL_ARGS (JSON, default {})
  stall_initialize   never answer `initialize`
  refuse_initialize  refuse `initialize` with an error
  config_error       refuse `thread/start` or `thread/resume` as 0.169.0 does a config.toml it
                     cannot load: the reason quotes the file's path and the offending line's
                     bearer token
  stall_thread       never answer `thread/start` or `thread/resume` (what a too-deep tool
                     schema does to 0.169.0); also picked by `fake-scenario:stall_thread` in
                     the thread's instructions or history (the request's messages), since the
                     turn's text comes too late
  stall_rate_limits  never answer `account/rateLimits/read` (any other scenario refuses it)
  ignore_interrupt   hang, leave `turn/interrupt` unanswered and stay when stdin closes (a
                     signal must end it; ignore_signals stays the same way)

Each run records `<pid>.json` (argv, the turn's text as `stdin`, every request received, cwd,
environment checks) and `<pid>.pids`, as the exec side does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

USAGE = {"totalTokens": 150, "inputTokens": 120, "cachedInputTokens": 20,
         "cacheWriteInputTokens": 0, "outputTokens": 30, "reasoningOutputTokens": 10}
SCENARIOS_THAT_HANG = {"hang", "ignore_signals", "grandchild", "ignore_interrupt"}
#: Scenarios whose app-server is stuck: it does not end when its stdin closes either, so only a
#: signal (SIGINT, or for ignore_signals SIGKILL) ends it.
STUCK_SCENARIOS = {"ignore_signals", "ignore_interrupt"}


def new_id() -> str:
    return str(uuid.uuid4())


class AppServer:
    def __init__(self, configs: list[str]) -> None:
        self.configs = configs
        self.record_dir = os.environ.get("FAKE_CODEX_RECORD_DIR")
        self.pid = os.getpid()
        self.requests: list[dict[str, Any]] = []
        self.prompt = ""
        self.thread_id = new_id()
        self.turn_id: str | None = None
        self.dynamic_tools: list[dict[str, Any]] = []
        self.instructions: str | None = None
        self.history: list[dict[str, Any]] = []
        self.rollout: Path | None = None
        self.lock = threading.Lock()
        self.turn_over = threading.Event()
        self.scenario = os.environ.get("FAKE_CODEX_SCENARIO", "normal")
        self.answer = os.environ.get("FAKE_CODEX_ANSWER", "Hello from fake Codex.")
        self._record_pids(self.pid)
        self.home_at_start = self._home_links()  # before this child adds anything
        self._record()

    # -- recording -----------------------------------------------------------------------------

    def _record_pids(self, pid: int) -> None:
        if self.record_dir:
            with open(os.path.join(self.record_dir, f"{self.pid}.pids"), "a") as file:
                file.write(f"{pid}\n")

    def _record(self) -> None:
        if not self.record_dir:
            return
        record = {
            "argv": ["app-server", *self.configs], "stdin": self.prompt,
            "requests": self.requests, "instructions": self.instructions,
            "history": self.history, "dynamic_tools": self.dynamic_tools,
            "codex_home": os.environ.get("CODEX_HOME"), "codex_home_links": self.home_at_start,
            "cwd": os.getcwd(),
            "cwd_entries": sorted(os.listdir(".")),
            "has_proxy_api_key": "PROXY_API_KEY" in os.environ,
            "pgid": os.getpgid(0), "sid": os.getsid(0),
        }
        path = os.path.join(self.record_dir, f"{self.pid}.json")
        with open(path + ".tmp", "w") as file:
            json.dump(record, file)
        os.replace(path + ".tmp", path)

    @staticmethod
    def _home_links() -> dict[str, str | None]:
        """What CODEX_HOME holds: each entry, with the target of a link."""
        home = Path(os.environ.get("CODEX_HOME", "/nonexistent"))
        if not home.is_dir():
            return {}
        return {entry.name: os.readlink(entry) if entry.is_symlink() else None
                for entry in sorted(home.iterdir())}

    # -- writing -------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
            sys.stdout.flush()

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send({"method": method, "params": params, "emittedAtMs": int(time.time() * 1000)})

    def ids(self) -> dict[str, Any]:
        return {"threadId": self.thread_id, "turnId": self.turn_id}

    def turn(self, status: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"id": self.turn_id, "rootTurnId": self.turn_id, "items": [],
                "itemsView": "notLoaded", "status": status, "error": error}

    def complete_turn(self, status: str, error: dict[str, Any] | None = None) -> None:
        if self.turn_over.is_set():
            return
        self.turn_over.set()
        self.notify("thread/status/changed", {"threadId": self.thread_id,
                                              "status": {"type": "idle"}})
        self.notify("turn/completed", {"threadId": self.thread_id,
                                       "turn": self.turn(status, error)})

    # -- reading -------------------------------------------------------------------------------

    def serve(self) -> None:
        for raw in sys.stdin:
            if not raw.strip():
                continue
            message = json.loads(raw)
            self.requests.append(message)
            self._record()
            method, request_id = message.get("method"), message.get("id")
            params = message.get("params") or {}
            if request_id is None:
                continue  # `initialized`, or our own requests' answers (there are none)
            if method == "initialize":
                if self.scenario == "stall_initialize":
                    continue
                if self.scenario == "refuse_initialize":
                    self.send({"id": request_id, "error": {"code": -32603,
                                                           "message": "fake refusal"}})
                    continue
                # As Codex does the first time it starts in a home: its databases.
                home = Path(os.environ.get("CODEX_HOME", "/nonexistent"))
                if home.is_dir() and not (home / "state_5.sqlite").exists():
                    (home / "state_5.sqlite").write_text("fake database")
                self.send({"id": request_id, "result": {
                    "userAgent": "codex-openai-proxy/0.169.0 (Debian 12.0.0; x86_64)",
                    "codexHome": os.environ.get("CODEX_HOME", "~/.codex"),
                    "platformFamily": "unix", "platformOs": "linux"}})
            elif method in ("thread/start", "thread/resume") and \
                    self.scenario == "config_error":
                from fake_codex import CONFIG_PATH, CONFIG_SECRET

                self.send({"id": request_id, "error": {"code": -32603, "message": (
                    f"failed to load configuration: {CONFIG_PATH}:5:16: invalid type: string "
                    f'"Bearer {CONFIG_SECRET}", expected a map')}})
            elif method == "thread/start":
                if self.scenario == "stall_thread" or "fake-scenario:stall_thread" in json.dumps(
                        params, ensure_ascii=False):
                    continue
                self.dynamic_tools = params.get("dynamicTools") or []
                thread = {"id": self.thread_id, "preview": "", "ephemeral": True,
                          "modelProvider": "openai", "cwd": params.get("cwd")}
                self.send({"id": request_id, "result": {
                    "thread": thread, "model": params.get("model") or "gpt-5.5",
                    "modelProvider": "openai", "cwd": params.get("cwd"),
                    "approvalPolicy": "never", "sandbox": {"type": "readOnly"},
                    "reasoningEffort": None}})
                self.notify("thread/started", {"thread": thread})
            elif method == "thread/resume":
                self.resume(request_id, params)
            elif method == "turn/start":
                self.start_turn(request_id, params)
            elif method == "account/rateLimits/read" and self.scenario == "stall_rate_limits":
                continue  # the backend never answers
            elif method == "turn/interrupt":
                if self.scenario in ("ignore_interrupt", "ignore_signals"):
                    continue
                self.send({"id": request_id, "result": {}})
                self.complete_turn("interrupted")
            else:
                self.send({"id": request_id, "error": {"code": -32601,
                                                       "message": f"unknown method {method}"}})
        # stdin closed: the app-server ends, as the real one does; unless it is stuck.
        while self.scenario in STUCK_SCENARIOS:
            time.sleep(3600)
        sys.exit(0)

    def resume(self, request_id: Any, params: dict[str, Any]) -> None:
        if self.scenario == "stall_thread":
            return
        thread_id = str(params.get("threadId"))
        home = Path(os.environ.get("CODEX_HOME", Path.home() / ".codex"))
        found = sorted((home / "sessions").glob(f"*/*/*/rollout-*-{thread_id}.jsonl"))
        if not found:
            self.send({"id": request_id, "error": {
                "code": -32600, "message": f"no rollout found for thread id {thread_id}"}})
            return
        self.rollout = found[0]
        if "fake-scenario:stall_thread" in self.rollout.read_text():
            return
        for raw in self.rollout.read_text().splitlines():
            line = json.loads(raw)
            if line["type"] == "session_meta":
                meta = line["payload"]
                self.instructions = (meta.get("base_instructions") or {}).get("text")
                self.dynamic_tools = meta.get("dynamic_tools") or []
            elif line["type"] == "response_item":
                self.history.append(line["payload"])
        self.thread_id = thread_id
        thread = {"id": self.thread_id, "preview": "", "ephemeral": False,
                  "modelProvider": "openai", "cwd": params.get("cwd")}
        self.send({"id": request_id, "result": {
            "thread": thread, "model": params.get("model") or "gpt-5.5",
            "modelProvider": "openai", "cwd": params.get("cwd"), "approvalPolicy": "never",
            "sandbox": {"type": "readOnly"}, "reasoningEffort": None}})

    def append_to_rollout(self, kind: str, payload: dict[str, Any]) -> None:
        if self.rollout is not None:
            with self.rollout.open("a") as file:
                file.write(json.dumps({"timestamp": "2026-11-25T00:00:00.000Z", "type": kind,
                                       "payload": payload}) + "\n")

    def start_turn(self, request_id: Any, params: dict[str, Any]) -> None:
        texts = [part.get("text", "") for part in params.get("input") or []
                 if part.get("type") == "text"]
        if not texts:  # a resumed thread's turn starts with no input: the last user
            users = [item for item in self.history  # message is in the history
                     if item.get("type") == "message" and item.get("role") == "user"]
            texts = [part.get("text", "") for part in (users[-1]["content"] if users else [])
                     if part.get("type") == "input_text"]
        self.prompt = "".join(texts)
        directive = re.search(r"fake-scenario:(\w+)", self.prompt)
        if directive:
            self.scenario = directive.group(1)
        self._record()
        self.turn_id = new_id()
        self.notify("thread/status/changed", {"threadId": self.thread_id,
                                              "status": {"type": "active", "activeFlags": []}})
        self.notify("turn/started", {"threadId": self.thread_id,
                                     "turn": self.turn("inProgress")})
        self.send({"id": request_id, "result": {"turn": self.turn("inProgress")}})
        if self.scenario in SCENARIOS_THAT_HANG:
            self.prepare_to_hang()
            self.reasoning("rs_ready", ["ready"])  # the tests' sign that all is in place
            return  # the turn runs until interrupted (or killed); serve() reads on
        threading.Thread(target=self.play, daemon=True).start()

    def prepare_to_hang(self) -> None:
        if self.scenario == "ignore_signals":
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        elif self.scenario == "grandchild":
            # Like the npm wrapper: a child of our own, in our process group, that outlives
            # us unless the whole group is killed.
            grandchild = subprocess.Popen([sys.executable, "-c",
                                           "import time; time.sleep(3600)"])
            self._record_pids(grandchild.pid)

    # -- what a turn says --------------------------------------------------------------------

    def reasoning(self, item_id: str, parts: list[str]) -> None:
        self.notify("item/started", {**self.ids(), "item": {
            "type": "reasoning", "id": item_id, "summary": [], "content": []}})
        for index, text in enumerate(parts):
            self.notify("item/reasoning/summaryTextDelta", {
                **self.ids(), "itemId": item_id, "delta": text, "summaryIndex": index})
        self.notify("item/completed", {**self.ids(), "item": {
            "type": "reasoning", "id": item_id, "summary": parts, "content": []}})

    def message(self, item_id: str, text: str, pieces: int = 3) -> None:
        self.notify("item/started", {**self.ids(), "item": {
            "type": "agentMessage", "id": item_id, "text": "", "phase": None}})
        size = max(1, -(-len(text) // pieces))
        for start in range(0, len(text), size):
            self.notify("item/agentMessage/delta", {**self.ids(), "itemId": item_id,
                                                    "delta": text[start:start + size]})
        self.notify("item/completed", {**self.ids(), "item": {
            "type": "agentMessage", "id": item_id, "text": text, "phase": None}})

    def usage(self) -> None:
        self.notify("thread/tokenUsage/updated", {**self.ids(), "tokenUsage": {
            "total": USAGE, "last": USAGE, "modelContextWindow": 258400}})

    def error(self, message: str, will_retry: bool) -> None:
        self.notify("error", {"error": {"message": message, "codexErrorInfo": "other",
                                        "additionalDetails": None},
                              "willRetry": will_retry, **self.ids()})

    def play(self) -> None:
        scenario, answer = self.scenario, self.answer
        # 0.169.0 warns about a model missing from its catalog, and carries on.
        self.notify("warning", {"message": "Model metadata for `gpt-5` not found."})
        if scenario == "normal":
            self.reasoning("rs_1", ["**Thinking** about it"])
            self.message("msg_1", answer)
        elif scenario == "two_messages":
            self.message("msg_1", "First message.")
            self.message("msg_2", answer)
        elif scenario == "operational":
            self.error("Reconnecting... 1/5 (stream disconnected)", will_retry=True)
            self.notify("item/completed", {**self.ids(), "item": {
                "type": "commandExecution", "id": "cmd_1", "command": "ls -la",
                "aggregatedOutput": "SECRET", "exitCode": 0, "status": "completed"}})
            self.message("msg_9", answer)
        elif scenario == "slow":
            time.sleep(float(os.environ.get("FAKE_CODEX_DELAY_S", "1")))
            self.message("msg_1", answer)
        elif scenario == "drip":
            count = int(os.environ.get("FAKE_CODEX_DRIP_COUNT", "20"))
            gap = float(os.environ.get("FAKE_CODEX_DRIP_MS", "50")) / 1000
            for index in range(count):
                if index:
                    time.sleep(gap)
                self.message(f"drip_{index}", f"[{index}@{time.monotonic_ns()}]", pieces=1)
        elif scenario == "long":
            size = int(os.environ.get("FAKE_CODEX_LONG_BYTES", str(1024 * 1024)))
            self.message("msg_1", ("0123456789abcdef" * (size // 16 + 1))[:size], pieces=64)
        elif scenario == "noisy":
            self.send_raw("stray debug line")
            self.message("msg_1", answer)
            self.send_raw("[1, 2, 3]")
        elif scenario == "tool_call":
            self.tool_call()
            return  # the turn waits for the call's result, which only the client has
        elif scenario == "auth_failure":
            text = ("unexpected status 401 Unauthorized: Missing bearer or basic authentication "
                    "in header, url: https://api.openai.com/v1/responses")
            self.error(text, will_retry=False)
            self.complete_turn("failed", {"message": text, "codexErrorInfo": "unauthorized"})
            return
        elif scenario == "turn_failed":
            text = "We're currently experiencing high demand, which may cause temporary errors."
            self.error("Reconnecting... 1/5", will_retry=True)
            self.error(text, will_retry=False)
            self.complete_turn("failed", {"message": text, "codexErrorInfo": "other"})
            return
        elif scenario == "crash":
            sys.stderr.write("thread 'main' panicked at codex-rs/app-server/src/lib.rs:42:5:\n"
                             "fake crash for the tests\n")
            sys.stderr.flush()
            os._exit(101)
        elif scenario == "exit_early":
            os._exit(0)
        elif scenario == "malformed":
            self.send_raw("this is not json")
            self.send_raw('{"broken": ')
            os._exit(0)
        else:
            sys.stderr.write(f"fake_codex: unknown scenario {scenario!r}\n")
            os._exit(2)
        self.usage()
        self.complete_turn("completed")

    def send_raw(self, text: str) -> None:
        with self.lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def tool_call(self) -> None:
        if not self.dynamic_tools:
            self.message("msg_1", self.answer)
            self.usage()
            self.complete_turn("completed")
            return
        name = self.dynamic_tools[0]["name"]
        arguments = os.environ.get("FAKE_CODEX_TOOL_ARGS", "{}")
        item = {"type": "function_call", "id": "fc_1", "name": name, "arguments": arguments,
                "call_id": "call_1"}
        self.append_to_rollout("response_item", item)
        self.send({"method": "item/tool/call", "id": 0, "params": {
            **self.ids(), "callId": "call_1", "namespace": None, "tool": name,
            "arguments": json.loads(arguments)}})
        self.append_to_rollout("token_usage_record", {
            "thread_id": self.thread_id, "turn_id": self.turn_id, "response_id": "resp_1",
            "usage": {"input_tokens": 120, "cached_input_tokens": 20, "output_tokens": 30,
                      "reasoning_output_tokens": 10, "total_tokens": 150}})


def serve(configs: list[str]) -> None:
    AppServer(configs).serve()
