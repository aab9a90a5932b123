"""The ChatGPT plan's usage limits: what Codex reports of them, shown at `/v1/usage`, in
`x-ratelimit-*` headers and as gauges; a limit reached upstream as a 429 that says which limit
and when it resets. With the real, pinned Codex against the mock upstream, which answers as the
ChatGPT backend does (its `x-codex-*` headers, its 429 `usage_limit_reached` body)."""

from __future__ import annotations

import time

import openai
import pytest
import trio

from codex_openai_proxy.codex_events import TurnFailed, failure
from codex_openai_proxy.plan_limits import PlanLimits, describe_reset, explain

from conftest import API_KEY, chat_body, open_stream, wait_dead
from mock_responses import PlanLimits as MockPlanLimits
from mock_responses import codex_home, fake_chatgpt_login

NOW = 1_795_621_969.0
USAGE_LIMIT_MESSAGE = ("You\u2019ve hit your usage limit. Upgrade to Pro "
                       "(https://chatgpt.com/explore/pro), visit "
                       "https://chatgpt.com/settings/usage to purchase more credits or try "
                       "again at 6:09 PM.")


def snapshot(primary_used=43, primary_resets_in=8217, **extra):
    return {"limitId": "codex", "limitName": None, "planType": None,
            "primary": {"usedPercent": primary_used, "windowDurationMins": 300,
                        "resetsAt": int(NOW) + primary_resets_in},
            "secondary": {"usedPercent": 13, "windowDurationMins": 10080,
                          "resetsAt": int(NOW) + 277_197},
            "credits": {"hasCredits": True, "unlimited": False, "balance": "12.34"},
            "rateLimitReachedType": None, **extra}


# -- what the proxy makes of Codex's reports (pure) ----------------------------------------------


def test_a_report_that_knows_nothing_keeps_what_the_last_one_said():
    limits = PlanLimits()
    limits.update(snapshot(planType="plus"), NOW)
    # A response without the backend's headers: Codex still reports, every field null.
    limits.update({"limitId": "codex", "primary": None, "secondary": None, "credits": None,
                   "planType": None}, NOW + 5)
    usage = limits.as_json(NOW + 5)
    assert usage["plan_type"] == "plus"
    assert usage["limits"][0]["primary"] == {"used_percent": 43, "window_minutes": 300,
                                             "resets_at": int(NOW) + 8217,
                                             "resets_in_seconds": 8212}
    assert usage["credits"] == {"has_credits": True, "unlimited": False, "balance": "12.34"}
    assert usage["updated_at"] == round(NOW + 5)


def test_headers_say_the_plan_s_windows():
    limits = PlanLimits()
    assert limits.headers(NOW) == {}
    limits.update(snapshot(), NOW)
    assert limits.headers(NOW + 17) == {
        "x-ratelimit-primary-used-percent": "43",
        "x-ratelimit-primary-window-minutes": "300",
        "x-ratelimit-primary-reset-at": str(int(NOW) + 8217),
        "x-ratelimit-primary-reset-after-seconds": "8200",
        "x-ratelimit-secondary-used-percent": "13",
        "x-ratelimit-secondary-window-minutes": "10080",
        "x-ratelimit-secondary-reset-at": str(int(NOW) + 277_197),
        "x-ratelimit-secondary-reset-after-seconds": "277180",
        "x-ratelimit-credits-balance": "12.34",
    }


def test_a_usage_limit_failure_says_which_window_and_when_it_resets():
    limits = PlanLimits()
    limits.update(snapshot(primary_used=100), NOW)
    explained = explain(failure(USAGE_LIMIT_MESSAGE, error_info="usageLimitExceeded"),
                        limits, NOW)
    assert explained.kind == "usage_limit" and explained.resets_in_s == 8217
    assert explained.message == USAGE_LIMIT_MESSAGE + (
        " (ChatGPT plan: the 5-hour limit is used up; it resets at 2026-11-25 18:09 UTC, "
        "in 2 h 16 min.)")


def test_both_windows_used_up_wait_for_the_later_reset():
    limits = PlanLimits()
    raw = snapshot(primary_used=100)
    raw["secondary"]["usedPercent"] = 100
    limits.update(raw, NOW)
    assert limits.reached(NOW) == ("the 5-hour and weekly limit", 277_197)
    assert describe_reset(277_197, NOW).endswith("in 3 days")


@pytest.mark.parametrize(("message", "error_info", "kind"), [
    (USAGE_LIMIT_MESSAGE, "usageLimitExceeded", "usage_limit"),
    ("Quota exceeded. Check your plan and billing details.", "usageLimitExceeded",
     "usage_limit"),
    ("exceeded retry limit, last status: 429 Too Many Requests",
     {"responseTooManyFailedAttempts": {"httpStatusCode": 429}}, "rate_limit"),
    ("rate limit exceeded: Rate limit reached for requests. Please try again in 20s.",
     "rateLimitExceeded", "rate_limit"),
    # `codex exec` says only the words.
    (USAGE_LIMIT_MESSAGE, None, "usage_limit"),
    ("exceeded retry limit, last status: 429 Too Many Requests", None, "rate_limit"),
    # Not limits.
    ("exceeded retry limit, last status: 500 Internal Server Error",
     {"responseTooManyFailedAttempts": {"httpStatusCode": 500}}, "codex"),
    ("You've hit your usage limit", "contextWindowExceeded", "codex"),
    ("upstream exploded", None, "codex"),
])
def test_which_failures_are_limits(message, error_info, kind):
    assert failure(message, error_info=error_info).kind == kind


def test_a_rate_limit_with_no_window_used_up_waits_as_long_as_the_upstream_said():
    event = failure("rate limit exceeded: Rate limit reached for requests. Please try again "
                    "in 350ms.", error_info="rateLimitExceeded")
    assert explain(event, PlanLimits(), NOW).resets_in_s == 1
    unknown = TurnFailed(USAGE_LIMIT_MESSAGE, "usage_limit")
    assert explain(unknown, PlanLimits(), NOW) == unknown


# -- with the real Codex ---------------------------------------------------------------------


@pytest.fixture(params=["exec", "app-server"])
def engine(request):
    return request.param


@pytest.mark.real_codex
async def test_the_limits_codex_reports_are_shown_on_every_answer(start_real_proxy,
                                                                  mock_upstream):
    mock_upstream.limits = MockPlanLimits()
    proxy = await start_real_proxy(engine="app-server")
    before = (await proxy.client.get("/v1/usage")).json()
    assert before == {"object": "codex.usage", "plan_type": None, "limits": [],
                      "credits": None, "updated_at": None}

    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200, response.text
    # Codex reported the limits with the answer: this very response says them.
    assert response.headers["x-ratelimit-primary-used-percent"] == "43"  # 42.5, rounded
    assert response.headers["x-ratelimit-primary-window-minutes"] == "300"
    assert 8210 <= int(response.headers["x-ratelimit-primary-reset-after-seconds"]) <= 8218
    assert response.headers["x-ratelimit-secondary-used-percent"] == "13"
    assert response.headers["x-ratelimit-credits-balance"] == "12.34"

    usage = (await proxy.client.get("/v1/usage")).json()
    [plan] = usage["limits"]
    assert plan["limit_id"] == "codex"
    assert plan["primary"]["used_percent"] == 43 and plan["primary"]["window_minutes"] == 300
    assert abs(plan["primary"]["resets_at"] - (time.time() + 8217)) < 10
    assert plan["secondary"]["used_percent"] == 13
    assert plan["secondary"]["window_minutes"] == 10080
    assert usage["credits"] == {"has_credits": True, "unlimited": False, "balance": "12.34"}

    metrics = (await proxy.client.get("/metrics")).text
    assert 'codex_plan_limit_used_percent{limit="codex",window="primary"} 43.0' in metrics
    assert 'codex_plan_limit_used_percent{limit="codex",window="secondary"} 13.0' in metrics
    assert 'codex_plan_limit_window_minutes{limit="codex",window="secondary"} 10080.0' \
        in metrics
    assert "codex_plan_credits_balance 12.34" in metrics

    # The limits are the account's: only a client with the key reads them.
    assert (await proxy.client.get("/v1/usage", headers={"Authorization": ""})
            ).status_code == 401


@pytest.mark.real_codex
async def test_a_usage_limit_is_a_429_saying_which_limit_and_when_it_resets(
        start_real_proxy, mock_upstream, engine):
    mock_upstream.scenario = "usage_limit"
    mock_upstream.limits = MockPlanLimits(primary_used_percent=100)
    proxy = await start_real_proxy(engine=engine)
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "usage_limit_reached"
    assert error["message"].startswith("You\u2019ve hit your usage limit.")
    # A retry within seconds would fail the same way: the SDKs are told not to.
    assert response.headers["x-should-retry"] == "false"
    if engine == "app-server":
        # Codex reported the limits with the failure: the proxy knows which and when.
        assert "ChatGPT plan: the 5-hour limit is used up; it resets at " in error["message"]
        assert 8210 <= int(response.headers["retry-after"]) <= 8218
        assert response.headers["x-ratelimit-primary-used-percent"] == "100"
    else:
        # `codex exec` says only the words: a 429 all the same, with no reset time to give.
        assert "retry-after" not in response.headers
    assert len(mock_upstream.requests) == 1
    # The proxy is fine: the next request runs.
    mock_upstream.scenario = "text"
    assert (await proxy.client.post("/v1/chat/completions", json=chat_body())
            ).status_code == 200


@pytest.mark.real_codex
async def test_a_usage_limit_mid_stream_is_an_error_event_saying_so(start_real_proxy,
                                                                    mock_upstream):
    mock_upstream.scenario = "usage_limit"
    mock_upstream.limits = MockPlanLimits(primary_used_percent=100)
    proxy = await start_real_proxy(engine="app-server")
    async with open_stream(proxy.client, chat_body(stream=True)) as stream:
        events = await stream.read_to_end()
    assert stream.response.status_code == 200  # the stream started before Codex knew
    [error] = [event["error"] for event in events if isinstance(event, dict)
               and "error" in event]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "usage_limit_reached"
    assert "the 5-hour limit is used up" in error["message"]


@pytest.mark.real_codex
async def test_the_openai_sdk_waits_for_a_reset_that_is_near_and_not_for_one_that_is_far(
        start_real_proxy, mock_upstream):
    mock_upstream.scenario = "usage_limit"
    proxy = await start_real_proxy(engine="app-server")
    client = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=API_KEY, max_retries=2)

    # Hours away: one call, one Codex run, and the error says when.
    mock_upstream.limits = MockPlanLimits(primary_used_percent=100)
    with pytest.raises(openai.RateLimitError) as far:
        await client.chat.completions.create(**chat_body())
    assert far.value.code == "rate_limit_exceeded"
    assert len(mock_upstream.requests) == 1

    # A second away: the SDK waits it out and tries again, twice (its `max_retries`).
    mock_upstream.limits = MockPlanLimits(primary_used_percent=100, primary_resets_in_s=1)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(**chat_body())
    assert len(mock_upstream.requests) == 1 + 3
    assert time.monotonic() - started >= 2  # `Retry-After: 1`, honoured twice


@pytest.mark.real_codex
async def test_a_rate_limit_codex_could_not_get_past_is_a_429(start_real_proxy,
                                                              mock_upstream):
    mock_upstream.scenario = "rate_limit"
    proxy = await start_real_proxy(engine="app-server")
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("rate_limit_exceeded", "rate_limit_error")
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.real_codex
async def test_refresh_has_codex_read_the_limits_from_the_chatgpt_backend(
        start_real_proxy, mock_upstream, tmp_path):
    home = codex_home(tmp_path / "chatgpt-home", mock_upstream.url)
    fake_chatgpt_login(home, mock_upstream.url, plan="pro")
    mock_upstream.limits = MockPlanLimits(primary_used_percent=71, plan_type="pro")
    proxy = await start_real_proxy(engine="app-server", env={"CODEX_HOME": str(home)})
    response = await proxy.client.get("/v1/usage?refresh=true")
    assert response.status_code == 200, response.text
    usage = response.json()
    assert "refresh_error" not in usage, usage
    assert mock_upstream.usage_reads == 1
    assert usage["plan_type"] == "pro"
    [plan] = usage["limits"]
    assert plan["primary"]["used_percent"] == 71 and plan["primary"]["window_minutes"] == 300
    assert abs(plan["primary"]["resets_at"] - (time.time() + 8217)) < 10
    assert plan["secondary"]["window_minutes"] == 10080
    assert usage["credits"]["balance"] == "12.34"
    # The headers of what follows say it too.
    models = await proxy.client.get("/v1/models")
    assert models.headers["x-ratelimit-plan-type"] == "pro"
    assert models.headers["x-ratelimit-primary-used-percent"] == "71"


@pytest.mark.real_codex
async def test_refresh_without_a_chatgpt_login_says_why(start_real_proxy, mock_upstream):
    proxy = await start_real_proxy(engine="app-server")
    response = await proxy.client.get("/v1/usage?refresh=true")
    assert response.status_code == 200, response.text
    usage = response.json()
    assert usage["limits"] == []
    assert usage["refresh_error"] == ("Codex could not read the plan's limits: codex account "
                                      "authentication required to read rate limits")


@pytest.mark.real_codex
async def test_the_responses_api_gets_the_same_429(start_real_proxy, mock_upstream):
    mock_upstream.scenario = "usage_limit"
    mock_upstream.limits = MockPlanLimits(primary_used_percent=100)
    proxy = await start_real_proxy(engine="app-server")
    client = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=API_KEY, max_retries=2)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.responses.create(model="gpt-5", input="Say hi")
    assert caught.value.code == "rate_limit_exceeded"
    assert "the 5-hour limit is used up" in caught.value.message
    assert 8210 <= int(caught.value.response.headers["retry-after"]) <= 8218
    assert len(mock_upstream.requests) == 1  # not retried: the reset is hours away


async def test_a_refresh_under_way_ends_at_shutdown_and_its_child_with_it(start_proxy,
                                                                          fake_codex):
    # A backend that never answers: the read would hold its child (and its slot) until
    # PROXY_CODEX_REPLY_TIMEOUT_S, past the shutdown's bound; the shutdown stops it, as it
    # stops runs, and what was known of the limits is still answered.
    proxy = await start_proxy("stall_rate_limits", engine="app-server")
    answers = []

    async def refresh() -> None:
        answers.append(await proxy.client.get("/v1/usage?refresh=true"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refresh)
        with trio.fail_after(10):  # the fake Codex, another process, records what it read
            while not (reading := [run for run in fake_codex.runs(idle=True) if any(
                    request["method"] == "account/rateLimits/read"
                    for request in run["requests"])]):
                await trio.sleep(0.01)
        proxy.server.shut_down()
    [answer] = answers
    assert answer.status_code == 200
    assert answer.json()["refresh_error"] == "the proxy is shutting down"
    [run] = reading
    await wait_dead(run["pid"])
