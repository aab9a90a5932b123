"""A local stand-in for the OpenAI Responses API, for running the real Codex CLI offline.

The real Codex talks to it through a temporary `CODEX_HOME/config.toml` (see `codex_home`):
`model_provider = "mock"` with `wire_api = "responses"` and no retries, so every failure the
mock is told to produce reaches Codex at once. What Codex 0.169.0 reads from the stream: only
the JSON `type` inside each `data:` line; `response.created`, `response.output_item.added` /
`.done`, `response.output_text.delta`, `response.reasoning_summary_text.delta` (with
`summary_index`), `response.completed` (with usage) and `response.failed`. A stream that ends
without `response.completed` is an error to Codex.

The mock records every request (headers, decoded JSON body, when each delta went out), and
answers according to a scenario: the one given to `MockResponses`, or one named in the request
itself by a `mock-scenario:NAME` marker anywhere in its input (so one mock serves a test that
mixes behaviours). Scenarios:

  text        the answer text in a few deltas, `delta_delay_s` apart
  reasoning   a reasoning summary (in deltas), then the text
  failure     `response.failed` with "upstream exploded"
  http500     an HTTP 500 with a JSON error body
  hang        `response.created`, then nothing, ever
  tool_call   `function_call` items from `tool_calls` (name, arguments), `delta_delay_s` apart
  text_tool_call  "Let me check." then the `function_call` items, in one response
  agent       an agent loop's model: `tool_call` when tools are offered and the input ends
              with the user's message, `text` otherwise (after the tool's result)
  usage_limit an HTTP 429 as the ChatGPT backend answers when the plan's usage limit is reached
              (`error.type` `usage_limit_reached`, `plan_type`, `resets_at`), primary window
              at 100 % in the headers
  rate_limit  an HTTP 429 `rate_limit_exceeded` with `retry-after`, as a rate limit answers

The plan's usage limits go out on every response (200 or 429) as the `x-codex-*` headers
Codex reads (codex-rs/codex-api `rate_limits.rs`), from `MockResponses.limits`.

A call is answered the way the real backend's model would answer for the tool mode in force:
a `function_call` for a tool offered as a function (in `tools`, or in an `additional_tools`
input item, as "responses lite" models get them); for a tool reachable only through Codex's
JavaScript `exec` tool (code mode), a `custom_tool_call` to `exec` whose script calls it; for
a tool not offered at all, a failed response saying so.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypercorn.trio
import trio
from hypercorn.config import Config
from quart import Response, request
from quart_trio import QuartTrio

ANSWER_DELTAS = ("Hello", " from", " the mock.")
REASONING_DELTAS = ("Thinking", " it over.")
USAGE = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 5,
         "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 15}
_MARKER = re.compile(r"mock-scenario:(\w+)")


@dataclass
class PlanLimits:
    """The ChatGPT plan's usage windows the mock reports, resets counted from each response."""

    primary_used_percent: float = 42.5
    primary_window_minutes: int = 300
    primary_resets_in_s: int = 8217
    secondary_used_percent: float = 13
    secondary_window_minutes: int = 10080
    secondary_resets_in_s: int = 277_197
    credits_balance: str = "12.34"
    plan_type: str = "plus"

    def headers(self, now: float) -> dict[str, str]:
        return {
            "x-codex-primary-used-percent": str(self.primary_used_percent),
            "x-codex-primary-window-minutes": str(self.primary_window_minutes),
            "x-codex-primary-reset-at": str(round(now) + self.primary_resets_in_s),
            "x-codex-secondary-used-percent": str(self.secondary_used_percent),
            "x-codex-secondary-window-minutes": str(self.secondary_window_minutes),
            "x-codex-secondary-reset-at": str(round(now) + self.secondary_resets_in_s),
            "x-codex-credits-has-credits": "true",
            "x-codex-credits-unlimited": "false",
            "x-codex-credits-balance": self.credits_balance,
            "x-codex-active-limit": "codex",
        }

    def usage_body(self, now: float) -> dict[str, Any]:
        """What the ChatGPT backend's `GET /backend-api/wham/usage` answers (Codex's
        `account/rateLimits/read` asks it; codex-rs/backend-client `RateLimitStatusPayload`)."""
        def window(used: float, minutes: int, resets_in: int) -> dict[str, Any]:
            return {"used_percent": used, "limit_window_seconds": minutes * 60,
                    "reset_after_seconds": resets_in, "reset_at": round(now) + resets_in}

        return {"plan_type": self.plan_type,
                "rate_limit": {
                    "allowed": self.primary_used_percent < 100,
                    "limit_reached": self.primary_used_percent >= 100,
                    "primary_window": window(self.primary_used_percent,
                                             self.primary_window_minutes,
                                             self.primary_resets_in_s),
                    "secondary_window": window(self.secondary_used_percent,
                                               self.secondary_window_minutes,
                                               self.secondary_resets_in_s)},
                "credits": {"has_credits": True, "unlimited": False,
                            "balance": self.credits_balance}}


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    delta_times: list[float] = field(default_factory=list)  # time.monotonic() per text delta
    finished_at: float | None = None

    def input_text(self) -> str:
        """Every text the model was given, joined (instructions excluded)."""
        return json.dumps(self.body.get("input", []), ensure_ascii=False)

    def tool_names(self) -> list[str]:
        """Every tool offered, wherever it is offered: top-level `tools`, or the
        `additional_tools` input items of "responses lite" models; a namespace's tools by
        their own names."""
        return [tool.get("name") or tool.get("type") for tool in self.tools()]

    def tools(self) -> list[dict[str, Any]]:
        offered = list(self.body.get("tools") or [])
        offered += [tool for item in self.body.get("input") or [] if isinstance(item, dict)
                    and item.get("type") == "additional_tools" for tool in item["tools"]]
        flat = []
        for tool in offered:
            flat += tool.get("tools", []) if tool.get("type") == "namespace" else [tool]
        return flat

    def function_names(self) -> set[str]:
        return {tool["name"] for tool in self.tools() if tool.get("type") == "function"}

    def custom_names(self) -> set[str]:
        return {tool["name"] for tool in self.tools() if tool.get("type") == "custom"}


@dataclass
class MockResponses:
    scenario: str = "text"
    delta_delay_s: float = 0.0
    #: How long the model "thinks" before its first output (after `response.created`).
    first_output_delay_s: float = 0.0
    answer: tuple[str, ...] = ANSWER_DELTAS
    tool_calls: list[tuple[str, Any]] = field(default_factory=list)  # (name, arguments)
    #: Sent as `x-codex-*` headers on every response; None sends none.
    limits: PlanLimits | None = None
    usage_reads: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    url: str = ""  # http://127.0.0.1:PORT/v1 once serving
    _arrived: trio.Event = field(default_factory=trio.Event)

    async def wait_for_request(self, count: int = 1) -> RecordedRequest:
        """Until `count` requests have arrived; the last of them."""
        while len(self.requests) < count:
            await self._arrived.wait()
        return self.requests[count - 1]

    def app(self) -> QuartTrio:
        app = QuartTrio(__name__)

        @app.post("/v1/responses")
        async def responses() -> Any:
            body = await request.get_json(force=True)
            recorded = RecordedRequest(request.path, dict(request.headers), body)
            self.requests.append(recorded)
            self._arrived.set()
            self._arrived = trio.Event()
            found = _MARKER.findall(recorded.input_text())
            scenario = found[-1] if found else self.scenario
            now = time.time()
            headers = self.limits.headers(now) if self.limits else {}
            if scenario == "agent":
                items = [item for item in body.get("input") or []
                         if item.get("type") != "additional_tools"]
                asked = bool(items) and items[-1].get("role") == "user"
                scenario = "tool_call" if asked and recorded.tools() else "text"
            if scenario == "http500":
                return {"error": {"message": "the mock upstream failed", "type": "server_error",
                                  "param": None, "code": None}}, 500
            if scenario == "usage_limit":
                # What the ChatGPT backend answers (codex-rs/codex-api `api_bridge.rs` reads
                # `error.type`, `plan_type`, `resets_at`).
                limits = self.limits or PlanLimits()
                return {"error": {
                    "type": "usage_limit_reached", "message": "The usage limit has been reached",
                    "plan_type": limits.plan_type,
                    "resets_at": round(now) + limits.primary_resets_in_s,
                    "resets_in_seconds": limits.primary_resets_in_s}}, 429, headers
            if scenario == "rate_limit":
                return {"error": {
                    "type": "requests", "code": "rate_limit_exceeded", "param": None,
                    "message": "Rate limit reached for requests. Please try again in 2s."}}, \
                    429, {**headers, "retry-after": "2"}
            response = Response(self._events(scenario, recorded), 200,
                                content_type="text/event-stream")
            response.headers.update(headers)
            response.timeout = None
            return response

        @app.get("/backend-api/wham/usage")
        async def usage() -> Any:
            self.usage_reads += 1
            return (self.limits or PlanLimits()).usage_body(time.time())

        return app

    async def _events(self, scenario: str, recorded: RecordedRequest) -> Any:
        def sse(payload: dict[str, Any]) -> bytes:
            return (f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n").encode()

        response_id = f"resp_{len(self.requests)}"
        yield sse({"type": "response.created", "response": {"id": response_id}})
        if self.first_output_delay_s:
            await trio.sleep(self.first_output_delay_s)
        if scenario == "hang":
            await trio.sleep_forever()
        if scenario == "failure":
            yield sse({"type": "response.failed", "response": {
                "id": response_id,
                "error": {"code": "server_error", "message": "upstream exploded"}}})
            return
        index = 0
        if scenario == "reasoning":
            item = {"type": "reasoning", "id": "rs_1", "summary": []}
            yield sse({"type": "response.output_item.added", "output_index": index, "item": item})
            for text in REASONING_DELTAS:
                yield sse({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1",
                           "output_index": index, "summary_index": 0, "delta": text})
            item = {**item, "summary": [{"type": "summary_text",
                                         "text": "".join(REASONING_DELTAS)}]}
            yield sse({"type": "response.output_item.done", "output_index": index, "item": item})
            index += 1
        if scenario == "text_tool_call":
            # Some words to the user, then the calls, in one response (as models often do).
            message = {"type": "message", "role": "assistant", "id": "msg_0",
                       "content": [{"type": "output_text", "text": "Let me check.",
                                    "annotations": []}]}
            yield sse({"type": "response.output_item.added", "output_index": index,
                       "item": {**message, "content": []}})
            yield sse({"type": "response.output_text.delta", "item_id": "msg_0",
                       "output_index": index, "content_index": 0, "delta": "Let me check."})
            yield sse({"type": "response.output_item.done", "output_index": index,
                       "item": message})
            index += 1
        if scenario in ("tool_call", "text_tool_call"):
            for number, (name, arguments) in enumerate(self.tool_calls, start=1):
                if number > 1 and self.delta_delay_s:
                    await trio.sleep(self.delta_delay_s)
                text = json.dumps(arguments, ensure_ascii=False)
                # Unique across the mock's responses, as a model's are: call_1, call_2, ... in
                # its first response, call_2_1, ... in its second.
                call_id = (f"call_{number}" if len(self.requests) == 1
                           else f"call_{len(self.requests)}_{number}")
                if name in recorded.function_names():
                    item = {"type": "function_call", "id": f"fc_{number}", "call_id": call_id,
                            "name": name, "arguments": text, "status": "completed"}
                elif "exec" in recorded.custom_names():  # code mode: a script calls it
                    item = {"type": "custom_tool_call", "id": f"ctc_{number}",
                            "call_id": call_id, "name": "exec",
                            "input": f"await tools.{name}({text});", "status": "completed"}
                else:
                    yield sse({"type": "response.failed", "response": {
                        "id": response_id, "error": {
                            "code": "invalid_request_error",
                            "message": f"the mock's model cannot call {name!r}: not offered"}}})
                    return
                yield sse({"type": "response.output_item.added", "output_index": index,
                           "item": {**item, "arguments": "", "status": "in_progress"}})
                yield sse({"type": "response.output_item.done", "output_index": index,
                           "item": item})
                index += 1
        else:
            message = {"type": "message", "role": "assistant", "id": "msg_1", "content": []}
            yield sse({"type": "response.output_item.added", "output_index": index,
                       "item": message})
            for number, text in enumerate(self.answer):
                if number and self.delta_delay_s:
                    await trio.sleep(self.delta_delay_s)
                recorded.delta_times.append(time.monotonic())
                yield sse({"type": "response.output_text.delta", "item_id": "msg_1",
                           "output_index": index, "content_index": 0, "delta": text})
            message = {**message, "content": [{"type": "output_text",
                                               "text": "".join(self.answer),
                                               "annotations": []}]}
            yield sse({"type": "response.output_item.done", "output_index": index,
                       "item": message})
        recorded.finished_at = time.monotonic()
        yield sse({"type": "response.completed",
                   "response": {"id": response_id, "usage": USAGE}})


async def serve_mock(mock: MockResponses, *, task_status: trio.TaskStatus[str]) -> None:
    """Serve `mock` on an ephemeral loopback port; started() with its base URL (…/v1)."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 0.1
    config.errorlog = None

    async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
        await hypercorn.trio.serve(mock.app(), config, task_status=task_status)

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(serve)
        mock.url = urls[0].replace("0.0.0.0", "127.0.0.1") + "/v1"
        task_status.started(mock.url)


def fake_chatgpt_login(home: Path, base_url: str, plan: str = "plus") -> None:
    """A ChatGPT login in `home` (unsigned tokens that expire in 2100, which Codex does not
    check offline), with the ChatGPT backend at the mock: Codex then reads the plan's limits
    from the mock's `/backend-api/wham/usage`."""
    def jwt(claims: dict[str, Any]) -> str:
        def part(value: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig"

    auth = {"chatgpt_plan_type": plan, "chatgpt_account_id": "acct_mock",
            "chatgpt_user_id": "user_mock", "user_id": "user_mock"}
    claims = {"exp": 4_102_444_800, "iat": 1_700_000_000, "https://api.openai.com/auth": auth}
    (home / "auth.json").write_text(json.dumps({
        "auth_mode": "chatgpt", "OPENAI_API_KEY": None,
        "tokens": {"id_token": jwt({**claims, "email": "mock@example.com"}),
                   "access_token": jwt(claims), "refresh_token": "rt_mock",
                   "account_id": "acct_mock"},
        "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    config = (home / "config.toml").read_text()
    root = base_url.removesuffix("/v1")
    (home / "config.toml").write_text(
        f'chatgpt_base_url = "{root}/backend-api/"\ncli_auth_credentials_store = "file"\n'
        + config)


def codex_home(directory: Path, base_url: str) -> Path:
    """A CODEX_HOME whose config points Codex at the mock, with retries off."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.toml").write_text(
        'model_provider = "mock"\n'
        "\n"
        "[model_providers.mock]\n"
        'name = "mock"\n'
        f'base_url = "{base_url}"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )
    return directory
