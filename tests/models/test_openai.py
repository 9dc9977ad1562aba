import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r1v4_nb.models.base import GenerationSettings, ModelError
from r1v4_nb.models.openai import OpenAIModel, r1v4_api, to_openai_messages

SETTINGS = GenerationSettings(temperature=0, max_tokens=50)


class _Fake(BaseHTTPRequestHandler):
    """Scripted chat server: each request pops the next (status, pieces) from the server's script."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"body": body, "auth": self.headers.get("Authorization")})
        status, pieces = self.server.script.pop(0) if self.server.script else (200, ["ok"])
        if status != 200:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "nope"}}')
            return
        self.send_response(200)
        if not body.get("stream"):
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            message = next((p["message"] for p in pieces if isinstance(p, dict)), None)
            message = message or {"role": "assistant", "content": "".join(pieces)}
            reply = {"choices": [{"message": message}]}
            self.wfile.write(json.dumps(reply).encode())
            return
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            for p in pieces:
                delta = p if isinstance(p, dict) else {"content": p}
                finish = delta.pop("finish_reason", None) if isinstance(p, dict) else None
                chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                time.sleep(self.server.delay)
            if self.server.usage:
                self.wfile.write(b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}\n\n')
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def fake():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    srv.script, srv.requests, srv.delay, srv.usage = [], [], 0.0, True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    yield srv
    srv.shutdown()
    srv.server_close()


def _run(model, messages, stop=(), cancel=None):
    deltas = list(model.stream(messages, stop=list(stop), settings=SETTINGS, cancel=cancel))
    return "".join(d.text for d in deltas), deltas[-1]


USER = [{"role": "user", "content": "hi"}]


def test_streams_usage_and_request_fields(fake, tmp_path, monkeypatch):
    img = tmp_path / "a.png"
    img.write_bytes(b"\x89PNG fake")
    monkeypatch.setenv("MY_KEY", "sekrit")
    fake.script = [(200, ["<think>", " a ", "b</think>"])]
    model = OpenAIModel(endpoint=fake.url.removesuffix("/v1"), model="m", api_key_env="MY_KEY")
    messages = [
        {"role": "user", "content": [{"type": "image", "image": str(img)}, {"type": "text", "text": "q"}]},
        {"role": "assistant", "content": "<think>"},
    ]
    text, last = _run(model, messages, stop=["</tool_call>"])
    assert text == "<think> a b</think>"
    assert last.finish_reason == "stop" and (last.usage.prompt_tokens, last.usage.completion_tokens) == (7, 3)
    req = fake.requests[0]
    assert req["auth"] == "Bearer sekrit"
    body = req["body"]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["stop"] == ["</tool_call>"] and body["stream"] and body["stream_options"]["include_usage"]
    assert body["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_stop_is_enforced_even_if_the_server_ignores_it(fake):
    fake.script = [(200, ["<tool_call>{}", "</tool", "_call> more text"])]
    text, last = _run(OpenAIModel(endpoint=fake.url, model="m", api_key_env=None), USER, stop=["</tool_call>"])
    assert text == "<tool_call>{}" and last.finish_reason == "stop"


def test_retries_with_backoff_then_succeeds(fake):
    fake.script = [(503, []), (429, []), (200, ["fine"])]
    model = OpenAIModel(endpoint=fake.url, model="m", api_key_env=None, retries=3, backoff=0.01)
    assert _run(model, USER)[0] == "fine"
    assert len(fake.requests) == 3


def test_gives_up_with_one_line_errors(fake):
    fake.script = [(401, [])]
    with pytest.raises(ModelError, match=r"HTTP 401.*\$OPENAI_API_KEY") as err:
        _run(OpenAIModel(endpoint=fake.url, model="m", retries=0), USER)
    assert "\n" not in str(err.value)
    dead = OpenAIModel(endpoint="http://127.0.0.1:9/v1", model="m", retries=1, backoff=0.01, api_key_env=None)
    with pytest.raises(ModelError, match="is the server running"):
        _run(dead, USER)
    with pytest.raises(ModelError, match="not an http"):
        OpenAIModel(endpoint="localhost:8000")


def test_cancel_stops_reading(fake):
    fake.script = [(200, [f"w{i} " for i in range(200)])]
    fake.delay = 0.01
    cancel = threading.Event()
    model = OpenAIModel(endpoint=fake.url, model="m", api_key_env=None)
    got = []
    for d in model.stream(USER, stop=[], settings=SETTINGS, cancel=cancel):
        got.append(d)
        if d.text:
            cancel.set()
    assert got[-1].finish_reason == "cancelled"
    assert "w199" not in "".join(d.text for d in got)


def test_r1v4_api_preset(fake, monkeypatch):
    monkeypatch.delenv("SKYWORK_API_KEY", raising=False)
    with pytest.raises(ModelError, match=r"\$SKYWORK_API_KEY"):
        r1v4_api(endpoint=fake.url)
    monkeypatch.delenv("R1V4_API_BASE", raising=False)
    monkeypatch.setenv("SKYWORK_API_KEY", "k")
    assert r1v4_api().endpoint == "https://api.skyworkmodel.ai/api/v1"  # the official scripts' endpoint
    transcript = "<think>x</think><answer>42</answer>"
    fake.script = [(200, [transcript])]
    model = r1v4_api("skywork/r1v4-lite", enable_search=False, endpoint=fake.url)
    reply = model.complete(USER)
    assert reply["choices"][0]["message"]["content"] == transcript == model.last_raw
    body = fake.requests[0]["body"]
    assert body["enable_search"] is False and body["model"] == "skywork/r1v4-lite" and not body["stream"]
    assert fake.requests[0]["auth"] == "Bearer k"
    assert model.describe()["backend"] == "openai"


def test_message_conversion_keeps_text_and_refuses_missing_images(tmp_path):
    out = to_openai_messages([{"role": "system", "content": "s"},
                              {"role": "user", "content": [{"type": "text", "text": "t"}]}])
    assert out == [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "t"}]}]
    with pytest.raises(ModelError, match="not found"):
        to_openai_messages([{"role": "user", "content": [{"type": "image", "image": str(tmp_path / "x.png")}]}])


def test_a_reply_made_only_of_tool_calls_becomes_the_dialects_call(fake):
    """vLLM with a tool parser returns the call in `tool_calls` and no content; it is not lost."""
    from r1v4_nb.dialects import get_dialect

    fake.script = [(200, [{"role": "assistant", "content": None},
                          {"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                           "function": {"name": "code", "arguments": ""}}]},
                          {"tool_calls": [{"index": 0, "function": {"arguments": '{"code": "print(1'}}]},
                          {"tool_calls": [{"index": 0, "function": {"arguments": ')"}'}}]},
                          {"finish_reason": "tool_calls"}])]
    model = OpenAIModel(endpoint=fake.url, model="m", api_key_env=None)
    text, last = _run(model, USER, stop=["</tool_call>"])
    assert text == '<tool_call>\n{"name": "code", "arguments": {"code": "print(1)"}}\n</tool_call>'
    assert last.finish_reason == "stop"
    (seg,) = get_dialect("r1v4").parse(text)
    assert seg.call.name == "code" and seg.call.arguments == {"code": "print(1)"} and seg.call.error is None


def test_separated_reasoning_comes_back_as_a_think_block(fake):
    fake.script = [(200, [{"reasoning_content": "The sign "}, {"reasoning_content": "is small."},
                          {"content": "<answer>Café</answer>"}])]
    model = OpenAIModel(endpoint=fake.url, model="m", api_key_env=None)
    text, _ = _run(model, USER)
    assert text == "<think>\nThe sign is small.\n</think>\n\n<answer>Café</answer>"


def test_complete_honours_stop_strings_and_tool_calls(fake):
    fake.script = [(200, ['<tool_call>{"name": "code"}</tool_call><observation>made up']),
                   (200, [{"message": {"role": "assistant", "content": "",
                                       "tool_calls": [{"id": "c", "type": "function", "function": {
                                           "name": "text_search", "arguments": '{"queries": ["a"]}'}}]}}])]
    model = OpenAIModel(endpoint=fake.url, model="m", api_key_env=None)
    reply = model.complete(USER, stop=["</tool_call>", "<observation>"])
    assert reply["choices"][0]["message"]["content"] == '<tool_call>{"name": "code"}' == model.last_raw
    reply = model.complete(USER, stop=["</tool_call>"])
    assert model.last_raw == '<tool_call>\n{"name": "text_search", "arguments": {"queries": ["a"]}}\n</tool_call>'


def test_missing_usage_is_unknown_not_zero(fake):
    fake.usage = False
    fake.script = [(200, ["a", "b"])]
    _, last = _run(OpenAIModel(endpoint=fake.url, model="m", api_key_env=None), USER)
    assert last.usage is None


# --- the hosted R1V4 API: tools run server-side, the reply is the whole transcript ---------------------


def _hosted_transcript(tmp_path):
    import base64
    import io
    import textwrap

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.effect_noise((48, 40), 60).convert("RGB").save(buf, format="PNG")
    png = buf.getvalue()
    wrapped = "\n".join(textwrap.wrap(base64.b64encode(png).decode(), 76))  # as R1V4's parser allows
    crop = '{"name": "code", "arguments": {"code": "image_1.crop((0, 0, 24, 20)).save(\'c.png\')\\nprint(\'c.png\')"}}'
    text = (f"<think>\nThe plaque is small; crop it.\n</think>\n\n<tool_call>{crop}</tool_call>\n"
            f'<observation>{{"result": "c.png", "type": "code"}}\ndata:image/png;base64,{wrapped}\n</observation>\n'
            '<think>\nSearch the text.\n</think>\n\n<tool_call>{"name": "text_search", "arguments": '
            '{"queries": ["Pont Neuf plaque"]}}</tool_call>\n'
            "<observation>1. Pont Neuf de Lorsac - Wikipedia\n2. Émile Garnier, architect</observation>\n"
            "<think>\nThe architect is Garnier.\n</think>\n\n<answer>Émile Garnier</answer>")
    return text, png


class _Hosted(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        text = self.server.transcript
        for i in range(0, len(text), 97):  # chunks that cut tags, JSON and base64 lines anywhere
            chunk = {"choices": [{"index": 0, "delta": {"content": text[i:i + 97]}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], '
                         b'"usage": {"prompt_tokens": 900, "completion_tokens": 400}}\n\n')
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def hosted(tmp_path, monkeypatch):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hosted)
    srv.requests = []
    srv.transcript, srv.png = _hosted_transcript(tmp_path)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/api/v1"
    monkeypatch.setenv("SKYWORK_API_KEY", "k")
    yield srv
    srv.shutdown()
    srv.server_close()


def test_a_hosted_run_streams_live_and_keeps_the_servers_observations_and_images(hosted, tmp_path):
    from PIL import Image as PILImage

    from r1v4_nb.agent import Agent
    from r1v4_nb.events import TokenDelta, ToolFinished
    from r1v4_nb.trajectory import read

    photo = tmp_path / "photo.png"
    PILImage.new("RGB", (48, 40), "grey").save(photo)
    model = r1v4_api("skywork/r1v4-lite", endpoint=hosted.url)
    events = list(Agent(model, tools=[], mode="deepresearch", runs_dir=tmp_path).run(
        "Who designed the bridge?", [photo], out=tmp_path / "run.jsonl"))
    (req,) = hosted.requests
    assert req["path"] == "/api/v1/chat/completions"
    assert "stop" not in req["body"] and req["body"]["enable_search"] is True and req["body"]["stream"]
    assert [m["role"] for m in req["body"]["messages"]] == ["user"]  # the server has its own prompt
    assert sum(isinstance(e, TokenDelta) for e in events) > 10  # the transcript streamed into the view
    assert [e.step.call.name for e in events if isinstance(e, ToolFinished)] == ["code", "text_search"]
    t = read(tmp_path / "run.jsonl")
    assert [s.type for s in t.steps] == ["model", "tool", "model", "tool", "model"]
    (crop,) = t.steps[1].observation.images
    assert crop.path.read_bytes() == hosted.png and "base64" not in t.steps[1].observation.text
    assert t.steps[3].observation.text.startswith("1. Pont Neuf de Lorsac")
    assert t.end.reason == "answered" and t.end.answer == "Émile Garnier"
    assert t.header.system_prompt == "" and t.header.tools == []


def test_the_planner_is_its_own_model_without_enable_search(hosted, monkeypatch):
    from r1v4_nb.models.loader import load_model
    from r1v4_nb.models.openai import R1V4_ENDPOINT, HostedR1V4

    planner = load_model("skywork/r1v4-vl-planner-lite", endpoint=None)
    assert isinstance(planner, HostedR1V4) and planner.endpoint == R1V4_ENDPOINT
    assert R1V4_ENDPOINT == "https://api.skyworkmodel.ai/api/v1"
    planner = r1v4_api("skywork/r1v4-vl-planner-lite", endpoint=hosted.url)
    list(planner.stream(USER, stop=["</tool_call>"], settings=SETTINGS))
    body = hosted.requests[-1]["body"]
    assert "enable_search" not in body and "stop" not in body and body["model"] == "skywork/r1v4-vl-planner-lite"
