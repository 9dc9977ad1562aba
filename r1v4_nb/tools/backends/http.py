"""The HTTP layer of the online backends: retries with backoff, and one-line failures.

A rate limit or an outage must never crash a run; it becomes one readable line
in the observation (`BackendUnavailable`) so the model can try something else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from ...errors import UsageError
from ..base import ToolError

RETRY_STATUS = {429, 500, 502, 503, 504}


class BackendUnavailable(ToolError):
    """A backend that is rate-limited, down or refusing us; the message is the observation."""


def api_key(backend: str, env: str, required: bool = True) -> str | None:
    """The API key from the named environment variable; a missing key is a UsageError naming the variable."""
    key = os.environ.get(env, "").strip()
    if not key and required:
        raise UsageError(f"the {backend} backend needs an API key: set the environment variable {env} "
                         f"(or pass api_key_env='OTHER_VAR')")
    return key or None


def _wait_for(response: httpx.Response | None, attempt: int, backoff: float, max_wait: float) -> float:
    if response is not None:
        after = response.headers.get("retry-after", "")
        if after.strip().isdigit():
            return min(float(after), max_wait)
    return min(backoff * (2 ** attempt), max_wait)


def request_json(client: httpx.Client, method: str, url: str, *, backend: str, retries: int = 3,
                 backoff: float = 1.0, max_wait: float = 20.0,
                 sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> Any:
    """Send a request and decode its JSON, retrying 429/5xx and network errors with exponential backoff."""
    last = ""
    for attempt in range(retries):
        response = None
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            last = f"{backend} timed out"
        except httpx.TransportError as exc:
            last = f"{backend} is unreachable ({type(exc).__name__})"
        else:
            if response.status_code == 429:
                last = f"{backend} is rate-limited (HTTP 429)"
            elif response.status_code in RETRY_STATUS:
                last = f"{backend} is down (HTTP {response.status_code})"
            elif response.status_code in (401, 403):
                raise BackendUnavailable(f"{backend} refused the request (HTTP {response.status_code}): "
                                         "check the API key")
            elif response.status_code >= 400:
                raise BackendUnavailable(f"{backend} answered HTTP {response.status_code}: "
                                         f"{response.text[:160].strip()}")
            else:
                try:
                    return response.json()
                except ValueError as exc:
                    raise BackendUnavailable(f"{backend} sent a reply that is not JSON") from exc
        if attempt + 1 < retries:
            sleep(_wait_for(response, attempt, backoff, max_wait))
    raise BackendUnavailable(f"{last} after {retries} tries; try again later or use another backend")
