"""OpenAI-compatible backend: vLLM, SGLang, `r1v4-nb serve`, or the hosted Skywork-R1V4 API.

Streams `/chat/completions` as server-sent events over httpx. Local images go
as data URLs. Continuing an assistant message uses the extra request fields vLLM
and SGLang accept (`continue_final_message: true, add_generation_prompt: false`).
Connection errors, 429 and 5xx are retried with exponential backoff until the
first token arrives; after that a failure is an error (the text is already out).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..messages import MessageError, to_openai
from .base import Delta, GenerationSettings, ModelError, Usage, cut_at_stop

R1V4_MODELS = ("skywork/r1v4-lite", "skywork/r1v4-vl-planner-lite")
R1V4_PLANNER = "skywork/r1v4-vl-planner-lite"
R1V4_ENDPOINT = "https://api.skyworkmodel.ai/api/v1"
R1V4_API_BASE_ENV = "R1V4_API_BASE"
R1V4_API_KEY_ENV = "SKYWORK_API_KEY"
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


def _usage(d: dict[str, Any]) -> Usage | None:
    """Usage from a reply, or None (unknown) when the server gave no token counts."""
    if not isinstance(d, dict) or ("prompt_tokens" not in d and "completion_tokens" not in d):
        return None
    return Usage(int(d.get("prompt_tokens") or 0), int(d.get("completion_tokens") or 0))


def _add_call_deltas(calls: dict[int, dict[str, str]], deltas: Any) -> None:
    """Accumulate OpenAI `tool_calls` (streamed pieces or whole calls) by index."""
    for n, tc in enumerate(deltas or []):
        if not isinstance(tc, dict):
            continue
        k = tc.get("index", n)
        call = calls.setdefault(k, {"id": "", "name": "", "arguments": ""})
        fn = tc.get("function") or {}
        call["id"] = call["id"] or tc.get("id") or ""
        call["name"] += fn.get("name") or ""
        args = fn.get("arguments")
        call["arguments"] += args if isinstance(args, str) else (json.dumps(args) if args is not None else "")


def calls_text(calls: dict[int, dict[str, str]], after_text: bool) -> str:
    """Parsed tool calls as the text a Qwen-family model writes them, byte for byte as Qwen3-VL's chat
    template renders `tool_calls`: each `<tool_call>\\n{"name": "N", "arguments": ARGS}\\n</tool_call>`."""
    out = []
    for k in sorted(calls):
        c = calls[k]
        sep = "\n" if out or after_text else ""
        out.append(f'{sep}<tool_call>\n{{"name": "{c["name"]}", "arguments": {c["arguments"].strip() or "{}"}}}\n</tool_call>')
    return "".join(out)


class _Reasoning:
    """A server's separated reasoning (`reasoning_content` / `reasoning`, vLLM's reasoning parsers) put back
    in front of the content inside a think block, as the model wrote it."""

    def __init__(self) -> None:
        self.open = False
        self.done = False

    def feed(self, delta: dict[str, Any]) -> str:
        out = ""
        piece = delta.get("reasoning_content") or delta.get("reasoning") or ""
        if piece and not self.done:
            if not self.open:
                out, self.open = "<think>\n", True
            out += piece
        content = delta.get("content") or ""
        if content:
            out += self.close()
            out += content
        return out

    def close(self) -> str:
        if self.open and not self.done:
            self.done = True
            return "\n</think>\n\n"
        self.done = True
        return ""

    def whole(self, message: dict[str, Any]) -> str:
        """A whole (non-streamed) message's text, its reasoning in front."""
        text = self.feed(message)
        return text + (self.close() if message.get("tool_calls") else "")


def to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """HF-shape messages (images as local paths) to OpenAI chat messages (images as data URLs)."""
    try:
        return to_openai(messages)
    except MessageError as exc:
        raise ModelError(str(exc)) from None


@dataclass
class OpenAIModel:
    endpoint: str
    model: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout: float = 120.0
    connect_timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.5
    extra_body: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    last_raw: str = ""
    last_response: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.endpoint = self.endpoint.rstrip("/")
        if not self.endpoint.startswith(("http://", "https://")):
            raise ModelError(f"endpoint {self.endpoint!r} is not an http(s) URL; pass e.g. http://localhost:8000/v1")
        if not self.endpoint.endswith("/v1") and "/v1/" not in self.endpoint + "/":
            self.endpoint += "/v1"
        self.name = self.name or self.model or self.endpoint

    # -- plumbing

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def _client(self):
        import httpx

        # A plain-http endpoint (a local vLLM, loopback) needs no TLS: building the default SSL context loads the
        # CA bundle, ~0.1 s per request, which capped an eval at concurrency 16 below 3x its sequential speed.
        verify = self.endpoint.startswith("https://")
        return httpx.Client(timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout), headers=self._headers(),
                            verify=verify)

    def _model_name(self) -> str:
        if self.model:
            return self.model
        import httpx

        try:
            with self._client() as c:
                r = c.get(f"{self.endpoint}/models")
                r.raise_for_status()
                data = r.json().get("data") or []
        except (httpx.HTTPError, ValueError) as exc:
            raise ModelError(f"cannot list models at {self.endpoint} ({exc}); pass model=NAME") from None
        if not data:
            raise ModelError(f"{self.endpoint} serves no models; pass model=NAME")
        self.model = data[0]["id"]
        self.name = self.name if self.name != self.endpoint else self.model
        return self.model

    def request_body(
        self, messages: list[dict[str, Any]], stop: list[str], settings: GenerationSettings, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model_name(),
            "messages": to_openai_messages(messages),
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "stream": stream,
        }
        if settings.top_p is not None:
            body["top_p"] = settings.top_p
        if settings.seed is not None:
            body["seed"] = settings.seed
        if stop:
            body["stop"] = list(stop)
        if stream:
            body["stream_options"] = {"include_usage": True}
        if messages and messages[-1].get("role") == "assistant":
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        body.update(self.extra_body)
        return body

    def _fail(self, status: int, text: str) -> ModelError:
        hint = {401: f"check the API key in ${self.api_key_env}", 403: f"check the API key in ${self.api_key_env}",
                404: "check the endpoint URL and model name"}.get(status, "see the server's log")
        detail = " ".join(text.split())[:200]
        return ModelError(f"{self.endpoint} answered HTTP {status}: {detail} ({hint})")

    # -- the protocol

    def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        stop: list[str],
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
    ) -> Iterator[Delta]:
        import httpx

        body = self.request_body(messages, stop, settings, stream=True)
        url = f"{self.endpoint}/chat/completions"
        for attempt in range(self.retries + 1):
            started = False
            try:
                with self._client() as client, client.stream("POST", url, json=body) as resp:
                    if resp.status_code != 200:
                        text = resp.read().decode("utf-8", "replace")
                        if resp.status_code in _RETRY_STATUS and attempt < self.retries:
                            time.sleep(self.backoff * 2**attempt)
                            continue
                        raise self._fail(resp.status_code, text)
                    for delta in self._read_sse(resp, stop, cancel):
                        started = True
                        yield delta
                    return
            except httpx.TransportError as exc:
                if started or attempt >= self.retries:
                    raise ModelError(f"{self.endpoint} failed: {exc.__class__.__name__}: {exc} "
                                     "(is the server running? raise timeout= for slow models)") from None
                time.sleep(self.backoff * 2**attempt)

    def _read_sse(self, resp: Any, stop: list[str], cancel: threading.Event | None) -> Iterator[Delta]:
        text, sent = "", 0
        finish: str | None = None
        usage: Usage | None = None
        holdback = max((len(s) for s in stop if s), default=1) - 1
        raw_chunks: list[dict[str, Any]] = []
        calls: dict[int, dict[str, str]] = {}
        reasoning = _Reasoning()
        for line in resp.iter_lines():
            if cancel is not None and cancel.is_set():
                finish = "cancelled"
                break
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            try:
                chunk = json.loads(payload)
            except ValueError:
                continue
            raw_chunks.append(chunk)
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                text += reasoning.feed(delta)
                _add_call_deltas(calls, delta.get("tool_calls"))
                finish = choice.get("finish_reason") or finish
            if cut_at_stop(text, stop)[1]:
                break
            safe = len(text) - holdback if stop else len(text)
            if safe > sent:
                yield Delta(text=text[sent:safe])
                sent = safe
        final, found = cut_at_stop(text, stop)
        if len(final) > sent:
            yield Delta(text=final[sent:])
        if calls and not found:  # a server that parses tool calls (vLLM --tool-call-parser): give them back as text
            tail = reasoning.close()
            tail += calls_text(calls, after_text=bool((final + tail).strip()))
            yield Delta(text=tail)
            final += tail
            finish = "stop"
        if found or finish == "tool_calls":
            finish = "stop"
        self.last_raw = final
        self.last_response = {"chunks": raw_chunks}
        yield Delta(finish_reason=finish or "stop", usage=usage)

    def complete(
        self, messages: list[dict[str, Any]], *, stop: list[str] | None = None,
        settings: GenerationSettings | None = None,
    ) -> dict[str, Any]:
        """One non-streaming request; returns the server's JSON reply as is (e.g. for the R1V4 API importer)."""
        import httpx

        body = self.request_body(messages, list(stop or []), settings or GenerationSettings(), stream=False)
        url = f"{self.endpoint}/chat/completions"
        for attempt in range(self.retries + 1):
            try:
                with self._client() as client:
                    resp = client.post(url, json=body)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise ModelError(f"{self.endpoint} failed: {exc.__class__.__name__}: {exc}") from None
                time.sleep(self.backoff * 2**attempt)
                continue
            if resp.status_code in _RETRY_STATUS and attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
                continue
            if resp.status_code != 200:
                raise self._fail(resp.status_code, resp.text)
            reply = resp.json()
            self._honour_stop(reply, list(stop or []))
            self.last_response = reply
            self.last_raw = ((reply.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
            return reply
        raise ModelError(f"{self.endpoint} kept failing after {self.retries} retries")

    @staticmethod
    def _honour_stop(reply: dict[str, Any], stop: list[str]) -> None:
        """Cut each choice's content at the first stop string, as `stream()` does (a server may ignore them),
        and turn parsed `tool_calls` back into the text the model wrote."""
        for choice in reply.get("choices") or []:
            message = choice.get("message") or {}
            content = _Reasoning().whole(message)
            content, found = cut_at_stop(content, stop)
            calls: dict[int, dict[str, str]] = {}
            _add_call_deltas(calls, message.get("tool_calls"))
            if calls and not found:
                content += calls_text(calls, after_text=bool(content.strip()))
            if found or calls:
                choice["finish_reason"] = "stop"
            message["content"] = content

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": "openai", "endpoint": self.endpoint, "model": self.model,
                "extra_body": self.extra_body}


@dataclass
class HostedR1V4(OpenAIModel):
    """The hosted Skywork-R1V4 API: it runs the tools itself and streams the whole transcript (calls,
    `<observation>`s with inline images, answer) as one assistant reply.

    Stop strings are neither sent nor applied, since cutting at the first `</tool_call>` throws the
    server's observations and answer away; the agent turns the transcript into steps (`runs_tools`)
    through the same code as `r1v4-nb import-api`.
    """

    runs_tools: bool = True

    def request_body(self, messages: list[dict[str, Any]], stop: list[str], settings: GenerationSettings,
                     stream: bool) -> dict[str, Any]:
        return super().request_body(messages, [], settings, stream)

    def stream(self, messages: list[dict[str, Any]], *, stop: list[str], settings: GenerationSettings,
               cancel: threading.Event | None = None) -> Iterator[Delta]:
        return super().stream(messages, stop=[], settings=settings, cancel=cancel)

    def complete(self, messages: list[dict[str, Any]], *, stop: list[str] | None = None,
                 settings: GenerationSettings | None = None) -> dict[str, Any]:
        return super().complete(messages, stop=None, settings=settings)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "hosted_tools": True}


def r1v4_api(
    model: str = "skywork/r1v4-lite",
    *,
    enable_search: bool = True,
    endpoint: str | None = None,
    api_key_env: str = R1V4_API_KEY_ENV,
    timeout: float = 600.0,
) -> HostedR1V4:
    """The hosted Skywork-R1V4 API (`https://api.skyworkmodel.ai/api/v1/chat/completions`; `endpoint` or
    $R1V4_API_BASE override it). Its tools run server-side and the reply is the whole transcript. The
    planner (`skywork/r1v4-vl-planner-lite`, plan mode) is a model of its own, sent without `enable_search`."""
    base = endpoint or os.environ.get(R1V4_API_BASE_ENV) or R1V4_ENDPOINT
    if not os.environ.get(api_key_env):
        raise ModelError(f"no API key for the R1V4 API; set ${api_key_env}")
    extra = {} if model == R1V4_PLANNER else {"enable_search": enable_search}
    return HostedR1V4(endpoint=base, model=model, api_key_env=api_key_env, timeout=timeout, extra_body=extra,
                      name=model)
