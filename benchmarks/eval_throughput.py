"""Eval throughput against an OpenAI-compatible server with a fixed latency, at concurrency 1, 4 and 16.

A loopback server answers every chat completion after LATENCY_S (as a busy vLLM would), so the
figure is how well the runner overlaps requests: items/s should grow with the concurrency (>= 3.5x
at 4, >= 12x at 16) until the server saturates. The server takes at most SERVER_SLOTS requests at
once, like a batch limit, so a last run at 32 shows the plateau.
Run: .venv/bin/python benchmarks/eval_throughput.py [--items 64] [--latency 0.5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection
from pathlib import Path

from r1v4_nb.eval.runner import run
from r1v4_nb.eval.tasks import Task

SERVER_SLOTS = 16


def serve(latency_s: float, port_out: Connection) -> None:
    """The server, in its own process: it must not share the runner's interpreter lock."""
    slots = threading.BoundedSemaphore(SERVER_SLOTS)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            with slots:
                time.sleep(latency_s)
            text = "<think>Read it.</think><answer>K7</answer>"
            chunks = [{"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
                      {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 40, "completion_tokens": 6}}]
            payload = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            data = payload.encode() if body.get("stream") else b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.request_queue_size = 64
    port_out.send(httpd.server_address[1])
    httpd.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.5)
    args = ap.parse_args()
    tasks = [Task(f"t{i:03d}", f"What code is on plaque {i}?", answers=["K7"]) for i in range(args.items)]
    ours, theirs = Pipe()
    server = Process(target=serve, args=(args.latency, theirs), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{ours.recv()}/v1"
    work = Path(tempfile.mkdtemp(prefix="r1v4-eval-bench-"))
    rows = []
    try:
        for c in (1, 4, 16, 32):
            t0 = time.perf_counter()
            res = run(tasks, endpoint=url, model_name="bench", modes=["direct"], out=work / f"c{c}",
                      concurrency=c, progress=None, plots=False)
            wall = time.perf_counter() - t0
            assert res.accuracy("direct") == 1.0
            rows.append((c, args.items / wall, wall))
    finally:
        server.terminate()
        server.join()
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0][1]
    print(f"{args.items} items, server latency {args.latency:.2f} s, server slots {SERVER_SLOTS}")
    print(f"{'concurrency':>11}  {'items/s':>8}  {'wall s':>7}  {'speed-up':>8}  {'ideal':>6}")
    for c, rate, wall in rows:
        print(f"{c:>11}  {rate:8.2f}  {wall:7.2f}  {rate / base:7.2f}x  {min(c, SERVER_SLOTS):>5}x")


if __name__ == "__main__":
    main()
