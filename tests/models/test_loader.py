import pytest

from r1v4_nb.models import ModelError, load_model
from r1v4_nb.models.openai import OpenAIModel


def test_demo_is_the_replayed_demonstration_and_replay_reads_a_file():
    from r1v4_nb.models.replay import DEMO_TRAJECTORY

    assert load_model("demo").describe()["backend"] == "replay"
    replay = load_model(f"replay:{DEMO_TRAJECTORY}")
    assert replay.describe() == {"name": replay.name, "backend": "replay", "source": str(DEMO_TRAJECTORY)}


def test_urls_and_endpoints_are_openai_backends():
    m = load_model("http://127.0.0.1:8000")
    assert isinstance(m, OpenAIModel) and m.endpoint == "http://127.0.0.1:8000/v1" and m.model is None
    m = load_model("qwen3-vl", endpoint="http://h:1/v1", api_key_env="K")
    assert (m.model, m.api_key_env) == ("qwen3-vl", "K")
    with pytest.raises(ModelError, match="server's business"):
        load_model(endpoint="http://h:1/v1", quantization="4bit")


def test_r1v4_api_needs_a_key(monkeypatch):
    monkeypatch.setenv("R1V4_API_BASE", "https://api.example/v1")
    monkeypatch.delenv("SKYWORK_API_KEY", raising=False)
    with pytest.raises(ModelError, match="SKYWORK_API_KEY"):
        load_model("r1v4-api")
    monkeypatch.setenv("SKYWORK_API_KEY", "k")
    m = load_model("skywork/r1v4-lite")
    assert m.extra_body == {"enable_search": True} and m.model == "skywork/r1v4-lite"


def test_missing_folder_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no model at"):
        load_model(str(tmp_path / "nothing"))


@pytest.mark.slow
def test_tiny_specs_build_once_into_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("R1V4_CACHE", str(tmp_path))
    model = load_model("tiny-dense", progress=None)
    assert model.describe()["backend"] == "hf" and model.model.config.model_type == "qwen3_vl"
    assert model.describe()["name"] == "tiny-dense (random weights, for tests)"  # it writes noise: it says so
    weights = tmp_path / "tiny-dense" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = load_model("tiny-dense", quantization="4bit", progress=None)
    assert weights.stat().st_mtime_ns == stamp and again.quantization == "4bit"


def test_models_use_the_projects_one_cache_folder(monkeypatch):
    from pathlib import Path

    from r1v4_nb.models.loader import cache_dir
    from r1v4_nb.tools.cache import cache_root

    monkeypatch.delenv("R1V4_CACHE", raising=False)
    assert cache_dir() == cache_root() == Path.home() / ".cache" / "r1v4-nb"
