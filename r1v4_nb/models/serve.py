"""An OpenAI-compatible server over any `Model` (usually the HF backend).

A model loaded once can serve other notebooks and the eval runner. Endpoints:
`GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions` (stream
true or false; stop, temperature, top_p, max_tokens / max_completion_tokens,
seed; images as data URLs, never fetched; `tools` given to the chat template
and tool calls in the output parsed into `tool_calls`, as vLLM does with a tool
parser; assistant `tool_calls` and `tool` messages in the history rendered
through the template; a final assistant message is continued, as in our model
protocol). An invalid request gets a 4xx with OpenAI's error body; what is not
implemented (n > 1, logprobs, response_format, penalties, forced tool_choice,
...) is a 400 naming the field, never ignored. Requests queue on the model's
lock, one generation at a time; a client that disconnects cancels its own.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import io
import json
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from ..errors import UsageError
from .base import GenerationSettings, Model, ModelError

_DATA_URL = re.compile(r"^data:image/([A-Za-z0-9.+-]+);base64,(.*)$", re.S)


def _image_file(url: str, folder: Path) -> str:
    m = _DATA_URL.match(url)
    if not m:
        raise RequestError("images must be data:image/...;base64 URLs (the server fetches nothing)")
    try:
        raw = base64.b64decode(m.group(2), validate=False)
    except ValueError as exc:
        raise RequestError(f"bad base64 image: {exc}") from None
    try:
        with PILImage.open(io.BytesIO(raw)) as im:
            fmt = (im.format or "png").lower()
            im.verify()
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(f"the data URL is not a readable image ({type(exc).__name__})") from None
    ext = {"jpeg": "jpg"}.get(fmt, fmt)
    path = folder / f"{hashlib.sha256(raw).hexdigest()[:32]}.{ext}"
    if not path.exists():
        path.write_bytes(raw)
    return str(path)


_ROLES = ("system", "developer", "user", "assistant", "tool")
# Request fields we do not implement: refused with a 400 naming the field, never silently ignored.
_UNSUPPORTED = {
    "n": lambda v: v not in (None, 1), "logprobs": lambda v: bool(v), "top_logprobs": lambda v: v is not None,
    "logit_bias": lambda v: bool(v), "functions": lambda v: bool(v), "function_call": lambda v: v is not None,
    "frequency_penalty": lambda v: v not in (None, 0, 0.0), "presence_penalty": lambda v: v not in (None, 0, 0.0),
    "audio": lambda v: v is not None, "modalities": lambda v: v not in (None, ["text"]),
    "response_format": lambda v: v is not None and (not isinstance(v, dict) or v.get("type") != "text"),
    "parallel_tool_calls": lambda v: v is False,
}


class RequestError(ValueError):
    """A bad request: answered with a 4xx and OpenAI's error object (`param` names the field)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


def check_request(body: dict[str, Any], model_name: str) -> None:
    """Refuse what we do not support (400) and a model we do not serve (404), as OpenAI answers."""
    for key, unsupported in _UNSUPPORTED.items():
        if key in body and unsupported(body[key]):
            raise RequestError(f"{key}={json.dumps(body[key])} is not supported by this server", key,
                               code="unsupported_parameter")
    if body.get("model") not in (None, model_name):
        raise RequestError(f"the model {body.get('model')!r} does not exist; this server serves {model_name!r}",
                           "model", 404, "model_not_found")
    choice = body.get("tool_choice")
    if choice not in (None, "auto", "none"):
        raise RequestError("tool_choice must be 'auto' or 'none' here (forcing a call is not supported)",
                           "tool_choice", code="unsupported_parameter")
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(
            isinstance(t, dict) and t.get("type") == "function" and isinstance((t.get("function") or {}).get("name"), str)
            for t in tools)):
        raise RequestError("tools must be a list of {\"type\": \"function\", \"function\": {\"name\": ...}}", "tools")


def to_hf_messages(messages: Any, folder: Path) -> list[dict[str, Any]]:
    """OpenAI chat messages to the HF shape our models take (images as local files), in the project's
    message mapping: `developer` is the system prompt, an assistant's `tool_calls` become the text the
    model wrote them as, `tool` messages stay tool messages (the template renders `<tool_response>`)."""
    from .openai import _add_call_deltas, calls_text

    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", "messages")
    out = []
    for n, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise RequestError(f"messages[{n}] needs a 'role' (one of {', '.join(_ROLES)})", f"messages[{n}].role")
        role = "system" if m["role"] == "developer" else m["role"]
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for item in content:
                if not isinstance(item, dict):
                    raise RequestError("each content part must be an object with a 'type'", f"messages[{n}].content")
                kind = item.get("type")
                if kind == "image_url" and role in ("user", "tool"):
                    url = item["image_url"]["url"] if isinstance(item.get("image_url"), dict) else item.get("image_url")
                    parts.append({"type": "image", "image": _image_file(str(url), folder)})
                elif kind == "text":
                    parts.append({"type": "text", "text": item.get("text", "")})
                else:
                    raise RequestError(f"content part type {kind!r} is not supported in a {m['role']} message",
                                       f"messages[{n}].content")
            content = parts
        elif content is None:
            content = ""
        elif not isinstance(content, str):
            raise RequestError("content must be a string or a list of parts", f"messages[{n}].content")
        msg: dict[str, Any] = {"role": role, "content": content}
        if role == "assistant" and m.get("tool_calls"):
            calls: dict[int, dict[str, str]] = {}
            _add_call_deltas(calls, m["tool_calls"])
            text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
            msg["content"] = text + calls_text(calls, after_text=bool(text.strip()))
        if role == "tool":
            msg["tool_call_id"] = str(m.get("tool_call_id") or "")
        out.append(msg)
    return out


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Tool calls in a reply (`<tool_call>{json}</tool_call>`, as vLLM's hermes parser reads them) as OpenAI
    `tool_calls`, and the content left around them; a call that does not parse stays in the content."""
    from ..dialects.tags import parse_tool_call

    calls, kept, pos = [], [], 0
    for m in re.finditer(r"<tool_call>(.*?)(?:</tool_call>|\Z)", text, re.S):
        call = parse_tool_call(m.group(1))
        if call.error:
            continue
        kept.append(text[pos:m.start()])
        pos = m.end()
        calls.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                      "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)}})
    kept.append(text[pos:])
    content = "".join(kept)
    return (content if content.strip() else "") if calls else content, calls


def _settings(body: dict[str, Any]) -> GenerationSettings:
    def number(key: str, default: Any) -> Any:
        value = body.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise RequestError(f"{key} must be a number, got {json.dumps(value)}", key)
        return value

    temperature = number("temperature", 0.2)
    if temperature is None:
        temperature = 0.2
    if not 0 <= temperature <= 2:
        raise RequestError(f"temperature must be between 0 and 2, got {temperature}", "temperature")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = number(key, None)
    if max_tokens is not None and (max_tokens != int(max_tokens) or max_tokens < 1):
        raise RequestError(f"{key} must be an integer of at least 1, got {max_tokens}", key)
    top_p = number("top_p", None)
    if top_p is not None and not 0 < top_p <= 1:
        raise RequestError(f"top_p must be in (0, 1], got {top_p}", "top_p")
    seed = number("seed", None)
    try:
        return GenerationSettings(temperature=float(temperature), max_tokens=int(max_tokens or 2048),
                                  top_p=None if top_p is None else float(top_p),
                                  seed=None if seed is None else int(seed))
    except UsageError as exc:
        raise RequestError(str(exc)) from None


def _stops(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop") or []
    if isinstance(stop, str):
        return [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
        raise RequestError("stop must be a string or a list of up to 4 strings", "stop")
    return list(stop)


class _Handler(BaseHTTPRequestHandler):
    server: ModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(fmt, *args)

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> None:
        """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
        self._json(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})

    def _model_card(self) -> dict[str, Any]:
        return {"id": self.server.model_name, "object": "model", "owned_by": "r1v4-nb", "created": self.server.started}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [self._model_card()]})
        elif path.startswith(("/v1/models/", "/models/")):
            wanted = path.split("/models/", 1)[1]
            if wanted == self.server.model_name:
                self._json(200, self._model_card())
            else:
                self._error(404, f"the model {wanted!r} does not exist", param="model", code="model_not_found")
        elif path in ("/health", "/v1/health"):
            self._json(200, {"status": "ok"})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                raise RequestError("the body is not valid JSON") from None
            if not isinstance(body, dict):
                raise RequestError("the body must be a JSON object")
            check_request(body, self.server.model_name)
            messages = to_hf_messages(body.get("messages"), self.server.image_dir)
            settings, stop = _settings(body), _stops(body)
        except RequestError as exc:
            self._error(exc.status, str(exc), param=exc.param, code=exc.code)
            return
        tools = None if body.get("tool_choice") == "none" else body.get("tools")
        req = _Request(f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), messages, stop, settings,
                       [t["function"] for t in tools] if tools else None)
        if body.get("stream"):
            self._stream(req, bool((body.get("stream_options") or {}).get("include_usage")))
        else:
            self._complete(req)

    def _generate(self, req: _Request, cancel: threading.Event | None = None):
        kw = {"tools": req.tools} if req.tools and "tools" in inspect.signature(self.server.model.stream).parameters else {}
        return self.server.model.stream(req.messages, stop=req.stop, settings=req.settings, cancel=cancel, **kw)

    def _chunk(self, req: _Request, delta: dict[str, Any], finish: str | None, usage: dict | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": req.id, "object": "chat.completion.chunk", "created": req.created,  # one value per stream
            "model": self.server.model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
        }
        if usage is not None:
            obj["usage"] = usage
        return f"data: {json.dumps(obj)}\n\n".encode()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, req: _Request, include_usage: bool) -> None:
        """Text streams as it comes; with `tools`, text from a `<tool_call>` on is held back and sent as
        `tool_calls` at the end (what vLLM's tool parser does)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        cancel = threading.Event()
        text, sent = "", 0
        try:
            self._write_chunk(self._chunk(req, {"role": "assistant", "content": ""}, None))
            for d in self._generate(req, cancel):
                if d.text:
                    text += d.text
                    safe = len(text)
                    if req.tools:
                        at = text.find("<tool_call>", sent)
                        safe = at if at != -1 else len(text) - len("<tool_call>")
                    if safe > sent:
                        self._write_chunk(self._chunk(req, {"content": text[sent:safe]}, None))
                        sent = safe
                if d.finish_reason:
                    finish = "length" if d.finish_reason == "length" else "stop"
                    rest, calls = parse_tool_calls(text[sent:]) if req.tools else (text[sent:], [])
                    if rest:
                        self._write_chunk(self._chunk(req, {"content": rest}, None))
                    if calls:
                        finish = "tool_calls"
                        self._write_chunk(self._chunk(req, {"tool_calls": [
                            {"index": k, **c} for k, c in enumerate(calls)]}, None))
                    self._write_chunk(self._chunk(req, {}, finish))
                    if include_usage and d.usage is not None:
                        u = {"prompt_tokens": d.usage.prompt_tokens, "completion_tokens": d.usage.completion_tokens,
                             "total_tokens": d.usage.prompt_tokens + d.usage.completion_tokens}
                        self._write_chunk(self._chunk(req, {}, None, usage=u))
            self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            cancel.set()
        except ModelError as exc:
            self._write_chunk(f"data: {json.dumps({'error': {'message': str(exc), 'type': 'model_error'}})}\n\n"
                              .encode())
            self.wfile.write(b"0\r\n\r\n")

    def _complete(self, req: _Request) -> None:
        text, finish, usage = [], "stop", None
        try:
            for d in self._generate(req):
                text.append(d.text)
                if d.finish_reason:
                    finish, usage = ("length" if d.finish_reason == "length" else "stop"), d.usage
        except ModelError as exc:
            self._error(400, str(exc), "model_error")
            return
        content, calls = parse_tool_calls("".join(text)) if req.tools else ("".join(text), [])
        message: dict[str, Any] = {"role": "assistant", "content": content if content or not calls else None}
        if calls:
            message["tool_calls"], finish = calls, "tool_calls"
        u = {"prompt_tokens": usage.prompt_tokens if usage else 0,
             "completion_tokens": usage.completion_tokens if usage else 0}
        u["total_tokens"] = u["prompt_tokens"] + u["completion_tokens"]
        self._json(200, {
            "id": req.id, "object": "chat.completion", "created": req.created, "model": self.server.model_name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": u,
        })


@dataclass
class _Request:
    """One validated chat completion request."""

    id: str
    created: int
    messages: list[dict[str, Any]]
    stop: list[str]
    settings: GenerationSettings
    tools: list[dict[str, Any]] | None


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model: Model, host: str = "127.0.0.1", port: int = 8000, *, name: str | None = None,
                 verbose: bool = False) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="r1v4-serve-")
        self.image_dir = Path(self._tmp.name)
        try:
            super().__init__((host, port), _Handler)
        except OSError:
            self._tmp.cleanup()
            raise
        self.model = model
        self.model_name = name or getattr(model, "name", "model")
        self.verbose = verbose
        self.started = int(time.time())

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def server_close(self) -> None:
        super().server_close()
        self._tmp.cleanup()


def serve(model: Model, host: str = "127.0.0.1", port: int = 8000, **kw: Any) -> ModelServer:
    """Start serving in a background thread; returns the server (call `.shutdown()` to stop)."""
    server = ModelServer(model, host, port, **kw)
    threading.Thread(target=server.serve_forever, name="r1v4-serve", daemon=True).start()
    return server
