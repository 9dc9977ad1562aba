"""An OpenAI-compatible server over any `Model` (usually the HF backend).

A model loaded once can serve other notebooks and the eval runner. Endpoints:
`GET /v1/models`, `POST /v1/chat/completions` (stream true or false; stop,
temperature, top_p, max_tokens, seed; images as data URLs, never fetched;
`continue_final_message` is implied by a final assistant message, as in
our model protocol). Requests are served one at a time by the model's lock; a
client that disconnects cancels its generation.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from .base import GenerationSettings, Model, ModelError

_DATA_URL = re.compile(r"^data:image/([A-Za-z0-9.+-]+);base64,(.*)$", re.S)


class RequestError(ValueError):
    """A bad request body: answered with HTTP 400 and an OpenAI-style error object."""


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


def to_hf_messages(messages: Any, folder: Path) -> list[dict[str, Any]]:
    """OpenAI chat messages to the HF shape our models take (images as local files)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    out = []
    for m in messages:
        if not isinstance(m, dict) or "role" not in m:
            raise RequestError("each message needs a 'role'")
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for item in content:
                if not isinstance(item, dict):
                    raise RequestError("each content part must be an object with a 'type'")
                kind = item.get("type")
                if kind == "image_url":
                    url = item["image_url"]["url"] if isinstance(item.get("image_url"), dict) else item.get("image_url")
                    parts.append({"type": "image", "image": _image_file(str(url), folder)})
                elif kind == "text":
                    parts.append({"type": "text", "text": item.get("text", "")})
                else:
                    raise RequestError(f"unsupported content part type {kind!r}")
            content = parts
        elif content is None:
            content = ""
        out.append({"role": m["role"], "content": content})
    return out


def _settings(body: dict[str, Any]) -> GenerationSettings:
    try:
        return GenerationSettings(
            temperature=float(body.get("temperature", 0.2)),
            max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 2048),
            top_p=float(body["top_p"]) if body.get("top_p") is not None else None,
            seed=int(body["seed"]) if body.get("seed") is not None else None,
        )
    except (TypeError, ValueError) as exc:
        raise RequestError(f"bad sampling setting: {exc}") from None


def _stops(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop") or []
    return [stop] if isinstance(stop, str) else [str(s) for s in stop]


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

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._json(status, {"error": {"message": message, "type": kind}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [
                {"id": self.server.model_name, "object": "model", "owned_by": "r1v4-nb", "created": self.server.started}
            ]})
        elif self.path.rstrip("/") in ("/health", "/v1/health"):
            self._json(200, {"status": "ok"})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise RequestError("the body must be a JSON object")
            messages = to_hf_messages(body.get("messages"), self.server.image_dir)
            settings, stop = _settings(body), _stops(body)
        except (ValueError, KeyError, TypeError) as exc:
            self._error(400, str(exc))
            return
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(rid, messages, stop, settings, include_usage)
        else:
            self._complete(rid, messages, stop, settings)

    def _chunk(self, rid: str, delta: dict[str, Any], finish: str | None, usage: dict | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": self.server.model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
        }
        if usage is not None:
            obj["usage"] = usage
        return f"data: {json.dumps(obj)}\n\n".encode()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, rid: str, messages, stop, settings, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        cancel = threading.Event()
        try:
            self._write_chunk(self._chunk(rid, {"role": "assistant", "content": ""}, None))
            for d in self.server.model.stream(messages, stop=stop, settings=settings, cancel=cancel):
                if d.text:
                    self._write_chunk(self._chunk(rid, {"content": d.text}, None))
                if d.finish_reason:
                    finish = "length" if d.finish_reason == "length" else "stop"
                    self._write_chunk(self._chunk(rid, {}, finish))
                    if include_usage and d.usage is not None:
                        u = {"prompt_tokens": d.usage.prompt_tokens, "completion_tokens": d.usage.completion_tokens,
                             "total_tokens": d.usage.prompt_tokens + d.usage.completion_tokens}
                        self._write_chunk(self._chunk(rid, {}, None, usage=u))
            self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            cancel.set()
        except ModelError as exc:
            self._write_chunk(f"data: {json.dumps({'error': {'message': str(exc)}})}\n\n".encode())
            self.wfile.write(b"0\r\n\r\n")

    def _complete(self, rid: str, messages, stop, settings) -> None:
        text, finish, usage = [], "stop", None
        try:
            for d in self.server.model.stream(messages, stop=stop, settings=settings):
                text.append(d.text)
                if d.finish_reason:
                    finish, usage = ("length" if d.finish_reason == "length" else "stop"), d.usage
        except ModelError as exc:
            self._error(400, str(exc), "model_error")
            return
        u = {"prompt_tokens": usage.prompt_tokens if usage else 0,
             "completion_tokens": usage.completion_tokens if usage else 0}
        u["total_tokens"] = u["prompt_tokens"] + u["completion_tokens"]
        self._json(200, {
            "id": rid, "object": "chat.completion", "created": int(time.time()), "model": self.server.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(text)},
                         "finish_reason": finish}],
            "usage": u,
        })


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
