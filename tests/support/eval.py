"""A loopback OpenAI-compatible server whose replies come from a Python function (judges, endpoint models)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[list[dict[str, Any]]], str]


class LoopbackServer:
    """Serves /v1/models and /v1/chat/completions (streamed or not); `reply(messages)` writes each answer."""

    def __init__(self, reply: Reply, model: str = "scripted-judge", latency_s: float = 0.0):
        self.reply = reply
        self.model = model
        self.latency_s = latency_s
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(200, json.dumps({"data": [{"id": server.model}]}).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server._lock:
                    server.requests.append(body)
                if server.latency_s:
                    time.sleep(server.latency_s)
                text = server.reply(body["messages"])
                for s in body.get("stop") or []:
                    if s and s in text:
                        text = text[:text.index(s)]
                usage = {"prompt_tokens": 10, "completion_tokens": max(1, len(text.split()))}
                if not body.get("stream"):
                    self._send(200, json.dumps({"id": "x", "model": server.model, "usage": usage, "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}]}).encode())
                    return
                events = [{"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
                          {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}]
                payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
                self._send(200, payload.encode(), "text/event-stream")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message (string or parts)."""
    for m in reversed(messages):
        if m["role"] == "user":
            c = m["content"]
            return c if isinstance(c, str) else " ".join(p.get("text", "") for p in c if p.get("type") == "text")
    return ""
