import json
import subprocess
import sys
import threading

import httpx
import pytest

pytest.importorskip("torch")

from r1v4_nb.models.base import GenerationSettings  # noqa: E402
from r1v4_nb.models.openai import OpenAIModel  # noqa: E402

GREEDY = GenerationSettings(temperature=0, max_tokens=12)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "green.png"
    Image.new("RGB", (80, 64), (0, 200, 0)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def server(tiny_moe_path):
    """`r1v4-nb serve` on the tiny model, in a real subprocess on a free loopback port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "r1v4_nb.cli", "serve", str(tiny_moe_path), "--port", "0", "--name", "tiny"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"server did not start: {proc.stderr.read()}")
    info = json.loads(line)
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    yield info["url"]
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def local(tiny_moe_path):
    from r1v4_nb.models.hf import load

    return load(tiny_moe_path, progress=None, prefix_reuse=False)


def _ask(image):
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Colour?"}]}]


def _text(model, messages, stop=(), settings=GREEDY):
    deltas = list(model.stream(messages, stop=list(stop), settings=settings))
    return "".join(d.text for d in deltas), deltas


def test_models_endpoint(server):
    r = httpx.get(f"{server}/models")
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "tiny"


def test_openai_backend_streams_what_the_model_generates(server, local, image):
    remote = OpenAIModel(endpoint=server, api_key_env=None)
    got, deltas = _text(remote, _ask(image))
    want, _ = _text(local, _ask(image))
    assert got == want and got
    assert len([d for d in deltas if d.text]) > 1  # really streamed
    assert deltas[-1].finish_reason in ("stop", "length")
    assert deltas[-1].usage.completion_tokens > 0 and deltas[-1].usage.prompt_tokens > 0
    assert remote.model == "tiny" and remote.last_raw == got


def test_stop_strings_and_continuing_an_assistant_message(server, local, image):
    remote = OpenAIModel(endpoint=server, model="tiny", api_key_env=None)
    full, _ = _text(local, _ask(image))
    stop = full[4:6]
    got, deltas = _text(remote, _ask(image), stop=[stop])
    assert got == full[: full.index(stop)] and deltas[-1].finish_reason == "stop"
    cont = _ask(image) + [{"role": "assistant", "content": [{"type": "text", "text": "<think> green"}]}]
    assert _text(remote, cont)[0] == _text(local, cont)[0]


def test_non_streaming_completion(server, local, image):
    remote = OpenAIModel(endpoint=server, model="tiny", api_key_env=None)
    reply = remote.complete(_ask(image), settings=GREEDY)
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["content"] == _text(local, _ask(image))[0]
    assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"]


def test_bad_requests_get_400(server):
    r = httpx.post(f"{server}/chat/completions", json={"messages": "hi"})
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    r = httpx.post(f"{server}/chat/completions", json={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]})
    assert r.status_code == 400 and "data:image" in r.json()["error"]["message"]
    r = httpx.post(f"{server}/chat/completions", json={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]})
    assert r.status_code == 400 and "not a readable image" in r.json()["error"]["message"]
    r = httpx.post(f"{server}/chat/completions", json={"messages": [{"role": "user", "content": ["hi"]}]})
    assert r.status_code == 400 and "content part" in r.json()["error"]["message"]
    assert httpx.get(f"{server}/nope").status_code == 404


def test_in_process_server_and_busy_port(local, image):
    from r1v4_nb.models.serve import serve

    srv = serve(local, port=0)
    try:
        remote = OpenAIModel(endpoint=srv.url, model=srv.model_name, api_key_env=None)
        assert _text(remote, _ask(image))[0] == _text(local, _ask(image))[0]
        port = srv.server_address[1]
        proc = subprocess.run([sys.executable, "-m", "r1v4_nb.cli", "serve", local.path, "--port", str(port)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "pick another --port" in proc.stderr
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("port,phrase", [("99999", "99999 is not a port"), ("http", "'http' is not a port number")])
def test_a_bad_port_is_refused_before_loading(port, phrase, capsys):
    from r1v4_nb.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "/no/such/model", "--port", port])  # the port is checked first
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert phrase in err and len(err.strip().splitlines()) == 1


# --- driven with the official `openai` client ----------------------------------------------------------


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=120)


@pytest.mark.parametrize("params, field", [
    ({"temperature": -1}, "temperature"), ({"max_tokens": -5}, "max_tokens"), ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": "hot"}, "temperature"), ({"top_p": 0}, "top_p"),
    ({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"presence_penalty": 0.5}, "presence_penalty"), ({"tool_choice": "required", "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}, "tool_choice"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
])
def test_invalid_or_unsupported_requests_get_openai_errors(client, params, field):
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], **params)
    err = info.value
    assert err.status_code == 400 and err.body["param"] == field and err.body["message"]


def test_an_unknown_model_is_404_and_models_can_be_retrieved(client):
    import openai

    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "model_not_found"
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("other")


def test_a_stream_keeps_one_created_and_the_developer_role_is_the_system_prompt(client):
    chunks = list(client.chat.completions.create(
        model="tiny", stream=True, max_tokens=6, temperature=0, stream_options={"include_usage": True},
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]))
    assert len({c.created for c in chunks}) == 1 and len({c.id for c in chunks}) == 1
    assert chunks[-1].usage.completion_tokens >= 1


def test_concurrent_requests_queue_without_mixing(client):
    prompts = ["What colour is the sky?", "Name a tower.", "Count to three.", "Say hello."]

    def ask(p):
        return client.chat.completions.create(model="tiny", temperature=0, max_tokens=10,
                                              messages=[{"role": "user", "content": p}]).choices[0].message.content

    alone = [ask(p) for p in prompts]
    results: dict[int, str] = {}
    threads = [threading.Thread(target=lambda k=k, p=p: results.__setitem__(k, ask(p))) for k, p in enumerate(prompts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [results[k] for k in range(len(prompts))] == alone


class _Scripted:
    """A model that writes a fixed reply and records what it was given (messages and tools)."""

    name = "scripted"

    def __init__(self, reply):
        self.reply, self.seen = reply, []

    def describe(self):
        return {"name": self.name, "backend": "scripted"}

    def stream(self, messages, *, stop, settings, cancel=None, tools=None):
        from r1v4_nb.models.base import Delta, Usage

        self.seen.append((messages, tools))
        for i in range(0, len(self.reply), 5):
            yield Delta(text=self.reply[i:i + 5])
        yield Delta(finish_reason="stop", usage=Usage(3, 4))


TOOLS = [{"type": "function", "function": {"name": "text_search", "description": "search",
                                           "parameters": {"type": "object", "properties": {
                                               "queries": {"type": "array", "items": {"type": "string"}}}}}}]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_are_parsed_from_the_output_and_tool_history_is_rendered(stream):
    import openai

    from r1v4_nb.models.serve import serve

    reply = 'Let me look.\n<tool_call>\n{"name": "text_search", "arguments": {"queries": ["Pont Neuf"]}}\n</tool_call>'
    model = _Scripted(reply)
    srv = serve(model, port=0)
    try:
        c = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0)
        history = [{"role": "user", "content": "Who built it?"},
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "call_1", "type": "function",
                        "function": {"name": "text_search", "arguments": '{"queries": ["bridge"]}'}}]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "1. Pont Neuf"}]
        if stream:
            chunks = list(c.chat.completions.create(model="scripted", messages=history, tools=TOOLS, stream=True))
            content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            calls = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
            finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
            assert content == "Let me look.\n" and finish == ["tool_calls"]
            (call,) = calls
        else:
            out = c.chat.completions.create(model="scripted", messages=history, tools=TOOLS)
            assert out.choices[0].finish_reason == "tool_calls" and out.choices[0].message.content == "Let me look.\n"
            (call,) = out.choices[0].message.tool_calls
        assert call.function.name == "text_search" and json.loads(call.function.arguments) == {"queries": ["Pont Neuf"]}
        messages, tools = model.seen[-1]
        assert tools == [TOOLS[0]["function"]]
        assert messages[1] == {"role": "assistant", "content":
                               '<tool_call>\n{"name": "text_search", "arguments": {"queries": ["bridge"]}}\n</tool_call>'}
        assert messages[2] == {"role": "tool", "content": "1. Pont Neuf", "tool_call_id": "call_1"}
    finally:
        srv.shutdown()
        srv.server_close()


def test_tool_history_renders_through_the_real_template(tiny_real_template_path):
    """The history the server builds renders as Qwen3-VL's template renders OpenAI tool messages."""
    from r1v4_nb.messages import chat_prompt
    from r1v4_nb.models.processor import load_processor
    from r1v4_nb.models.serve import to_hf_messages

    msgs = to_hf_messages([{"role": "user", "content": "Q"},
                           {"role": "assistant", "content": "", "tool_calls": [
                               {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]},
                           {"role": "tool", "tool_call_id": "c", "content": "r"}], None)
    text = chat_prompt(load_processor(tiny_real_template_path), msgs, tools=[TOOLS[0]["function"]])
    assert '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call><|im_end|>' in text
    assert "<|im_start|>user\n<tool_response>\nr\n</tool_response><|im_end|>" in text
    assert "<tools>" in text and '"name": "text_search"' in text and text.endswith("<|im_start|>assistant\n<think>\n")
