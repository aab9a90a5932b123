"""Every error the proxy sends, in OpenAI's shape: `{"error": {message, type, param, code}}`.

Clients (the OpenAI SDKs, Roo Code) show `error.message` to the user and decide whether to retry
from the status, so every failure goes through the one `ApiError` type, and each kind of failure
has one named constructor here. Nothing else in the package builds an `ApiError` by hand.

| status | code                          | when                                                  |
|-------:|-------------------------------|-------------------------------------------------------|
| 400    | (varies), `param` names field | the request cannot be honoured (`invalid`)            |
| 400    | `tools_unsupported`           | tools asked of a Codex build without app-server       |
| 400    | `invalid_model`               | a `model` Codex could not take (length, characters)   |
| 400    | `invalid_string`              | a string with a lone surrogate (not Unicode text)     |
| 400    | `nesting_too_deep`            | JSON nested deeper than Codex reads                   |
| 400    | `number_out_of_range`         | a number Codex's JSON cannot hold                     |
| 400    | `image_too_large`             | an image over the byte or pixel budget, or too many   |
| 400    | `array_above_max_length`      | more messages (or parts) than the proxy takes         |
| 400    | `too_many_values`             | a body of more JSON values than the proxy reads       |
| 400    | `context_length_exceeded`     | a prompt over Codex's 1,048,576-character input limit |
| 400    | `arguments_too_long`          | the run's command line is over the system's limit     |
| 401    | `missing_api_key`             | no `Authorization` header on `/v1/*`                  |
| 401    | `invalid_api_key`             | a key other than `PROXY_API_KEY`                      |
| 404    | `unknown_url`                 | no such route                                         |
| 404    | `model_not_found`             | `GET /v1/models/{id}` of a model not listed           |
| 405    | `method_not_allowed`          | a route asked with the wrong method                   |
| 408    | `request_timeout`             | the body did not arrive in time                       |
| 413    | `request_too_large`           | the body is over `PROXY_MAX_BODY_MB`                  |
| 429    | `too_many_concurrent_runs`    | every slot stayed busy for `PROXY_QUEUE_TIMEOUT_S`    |
| 429    | `rate_limit_exceeded`         | the ChatGPT plan's usage limit (type                  |
|        |                               | `usage_limit_reached`) or the upstream's rate limit   |
|        |                               | (type `rate_limit_error`) stopped the run             |
| 500    | `internal_error`              | a bug in the proxy                                    |
| 502    | `codex_error`                 | Codex failed (failed turn, crash, unreadable output)  |
| 502    | `codex_not_logged_in`         | Codex has no valid login                              |
| 502    | `tool_call_required`          | `tool_choice` required a call and the model gave text |
| 503    | `codex_not_found`             | Codex is missing or cannot be started                 |
| 503    | `storage_unavailable`         | the run's scratch folder could not be written         |
| 503    | `shutting_down`               | the server is stopping                                |
| 504    | `timeout`                     | the run passed `PROXY_REQUEST_TIMEOUT_S`              |

A 429 for a full queue carries `Retry-After`, since a slot will free up. A 429 for a limit
carries `Retry-After` when the reset time is known, and `x-should-retry: true` only when that is
at most `RETRY_SOON_S` away: the OpenAI SDKs wait out a `Retry-After` of up to 60 s, but past it
they retry within seconds, and every retry is a Codex run that fails the same way. The 5xx the
proxy decides on carry `x-should-retry: false` (`NO_RETRY`) for the same reason.

A message never carries file paths, secrets, backtraces or Codex's raw error output: it says
what failed in the proxy's words, or in Codex's own (a failed turn, the upstream's error) made
safe to show; the full text goes to the proxy's log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Tells the OpenAI SDKs (and Roo Code, which uses them) not to retry.
NO_RETRY = {"x-should-retry": "false"}
#: The longest `Retry-After` the OpenAI SDKs (Python and Node) wait out before a retry.
RETRY_SOON_S = 60


@dataclass
class ApiError(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


# -- the request: 4xx ---------------------------------------------------------------------------


def invalid(message: str, param: str | None, code: str | None = None) -> ApiError:
    """A 400 for a request the proxy cannot honour, naming the offending parameter."""
    return ApiError(400, message, "invalid_request_error", param, code)


def tools_unsupported(codex_version: str | None) -> ApiError:
    return invalid(
        "Tool calling needs `codex app-server`, which this Codex build "
        f"({codex_version or 'unknown version'}) does not have.",
        "tools", "tools_unsupported")


def invalid_json(detail: str) -> ApiError:
    return invalid(f"The request body is not valid JSON: {detail}", None, "invalid_json")


def nesting_too_deep(param: str | None, limit: int | None) -> ApiError:
    """JSON nested deeper than the proxy reads (`param` None: the body, past the parser's
    recursion) or passes on to Codex (`limit` levels), whose JSON-RPC stops at 127."""
    if param is None:
        return invalid("The request body is nested too deeply to read.", None,
                       "nesting_too_deep")
    return invalid(f"'{param}' is nested more than {limit} levels deep, more than the proxy "
                   "passes on to Codex.", param, "nesting_too_deep")


def prompt_too_long(chars: int, limit: int) -> ApiError:
    """The prompt is over Codex's input limit; Codex counts characters (Unicode code points)."""
    return invalid(
        f"The conversation makes a prompt of {chars:,} characters; Codex accepts at most "
        f"{limit:,}. Shorten or condense the conversation.",
        "messages", "context_length_exceeded")


def arguments_too_long() -> ApiError:
    """The run's command line (E2BIG) is over the system's limit: the request, not Codex."""
    return invalid(
        "The request is too large to pass to Codex: its command line is over the system's "
        "limit (send fewer images).", "messages", "arguments_too_long")


def missing_api_key() -> ApiError:
    return ApiError(401, "You didn't provide an API key. Send it as "
                    "`Authorization: Bearer <PROXY_API_KEY>`.", "invalid_request_error", None,
                    "missing_api_key")


def invalid_api_key() -> ApiError:
    return ApiError(401, "Incorrect API key provided. Use the PROXY_API_KEY the proxy was "
                    "started with.", "invalid_request_error", None, "invalid_api_key")


def unknown_url(method: str, path: str) -> ApiError:
    return ApiError(404, f"Unknown request URL: {method} {path}.", "invalid_request_error", None,
                    "unknown_url")


def model_not_found(model_id: str) -> ApiError:
    return ApiError(404, f"The model '{model_id}' does not exist.", "invalid_request_error",
                    "model", "model_not_found")


def method_not_allowed(method: str, path: str) -> ApiError:
    return ApiError(405, f"Method {method} is not allowed for {path}.", "invalid_request_error",
                    None, "method_not_allowed")


def request_timeout() -> ApiError:
    return ApiError(408, "The request body did not arrive in time.", "invalid_request_error",
                    None, "request_timeout")


def request_too_large(max_body_mb: float) -> ApiError:
    return ApiError(413, f"The request body is larger than PROXY_MAX_BODY_MB ({max_body_mb:g} "
                    "MB).", "invalid_request_error", None, "request_too_large")


def http_error(status: int, description: str) -> ApiError:
    """Any other HTTP-level refusal (from the web framework), in the same shape."""
    return ApiError(status, description, "invalid_request_error", None, None)


def queue_full(max_concurrent: int, queue_timeout_s: float) -> ApiError:
    # Retrying is the right move here: a slot will free up. Retry-After says when to try.
    return ApiError(
        429,
        f"All {max_concurrent} Codex slots stayed busy for {queue_timeout_s:g} s "
        "(PROXY_MAX_CONCURRENT, PROXY_QUEUE_TIMEOUT_S). Try again shortly.",
        "rate_limit_exceeded", None, "too_many_concurrent_runs",
        {"retry-after": str(max(1, round(queue_timeout_s / 2)))},
    )


# -- the proxy and Codex: 5xx -------------------------------------------------------------------


def internal_error(detail: str) -> ApiError:
    """A bug in the proxy, not in the request or in Codex."""
    return ApiError(500, f"Internal error in the proxy: {detail}", "api_error", None,
                    "internal_error")


def codex_failed(message: str, *, not_logged_in: bool = False) -> ApiError:
    """Codex could not produce the answer; the message says why, in Codex's words made safe to
    show (`codex_events.safe_for_client`) or the proxy's."""
    return ApiError(502, message, "api_error", None,
                    "codex_not_logged_in" if not_logged_in else "codex_error", dict(NO_RETRY))


def limit_reached(message: str, *, usage_limit: bool, resets_in_s: int | None) -> ApiError:
    """A limit reached upstream stopped the run: the ChatGPT plan's usage limit or credits
    (`usage_limit`), or the upstream's rate limit. `message` says which and when it resets."""
    headers = {"x-should-retry": "true" if resets_in_s is not None
               and resets_in_s <= RETRY_SOON_S else "false"}
    if resets_in_s is not None:
        headers["Retry-After"] = str(max(resets_in_s, 1))
    return ApiError(429, message, "usage_limit_reached" if usage_limit else "rate_limit_error",
                    None, "rate_limit_exceeded", headers)


def tool_call_required() -> ApiError:
    return ApiError(502, "tool_choice required a tool call, but the model answered without "
                    "calling a tool.", "api_error", "tool_choice", "tool_call_required",
                    dict(NO_RETRY))


def codex_unavailable() -> ApiError:
    # Where the proxy looked (CODEX_BIN, PATH) is for the operator: the log and
    # `/healthz?verbose` with the API key say it, a client is told what to do.
    return ApiError(503, "The Codex CLI was not found or could not be started. Install it with "
                    "`npm i -g @openai/codex` or set CODEX_BIN to its full path; the proxy's "
                    "log and /healthz?verbose say what was tried.", "api_error", None,
                    "codex_not_found", dict(NO_RETRY))


def system_resources_exhausted(reason: str) -> ApiError:
    """Codex could not be started because the system was short of something (descriptors,
    memory, processes): Codex is as installed as it was, and a retry soon may well run.
    `reason` is the system's own text (`strerror`), which names no path."""
    return ApiError(503, f"The proxy could not start Codex just now: {reason}. Try again "
                    "shortly.", "api_error", None, "resources_exhausted",
                    {"retry-after": "2"})


def storage_unavailable(reason: str) -> ApiError:
    """The run's scratch folder (or an image in it) could not be written: a full disk, most
    often. `reason` is the system's own text (`strerror`), which names no path."""
    return ApiError(503, f"The proxy could not prepare the run's files: {reason}.", "api_error",
                    None, "storage_unavailable", dict(NO_RETRY))


def shutting_down() -> ApiError:
    return ApiError(503, "The proxy is shutting down.", "api_error", None, "shutting_down",
                    dict(NO_RETRY))


def run_timeout(seconds: float) -> ApiError:
    return ApiError(504, f"Codex did not finish within PROXY_REQUEST_TIMEOUT_S ({seconds:g} s); "
                    "the run was stopped.", "api_error", None, "timeout", dict(NO_RETRY))
