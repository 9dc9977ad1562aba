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
        remote = OpenAIModel(endpoint=srv.url, model="x", api_key_env=None)
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
