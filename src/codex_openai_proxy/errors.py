"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

Clients (the OpenAI SDKs, Roo Code) read `error.message` and show it to the user, and decide
whether to retry from the status, so every failure the proxy reports goes through this one type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


def invalid(message: str, param: str | None, code: str | None = None) -> ApiError:
    """A 400 for a request the proxy cannot honour, naming the offending parameter."""
    return ApiError(400, message, "invalid_request_error", param, code)


def internal_error(detail: str) -> ApiError:
    """A bug in the proxy, not in the request or in Codex."""
    return ApiError(500, f"Internal error in the proxy: {detail}", "api_error", None,
                    "internal_error")
