import json

from r1v4_nb.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_corpus_build_and_tool_commands_print_json(tmp_path, capsys, small_world, monkeypatch):
    monkeypatch.setenv("R1V4_CACHE", str(tmp_path / "cache"))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.md").write_text("# Quartz tower\nThe quartz tower is 40 m tall.")
    code, out, _ = run(capsys, "corpus", "build", str(tmp_path / "site"), "--base-url", "https://s.example")
    assert code == 0 and json.loads(out)["pages"] == 1
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "corpus", "build", str(tmp_path / "empty"))
    assert code == 2 and err.count("\n") == 1 and "no pages in" in err
    assert not (tmp_path / "empty" / "corpus.sqlite").exists()
    code, out, _ = run(capsys, "tool", "text_search", "quartz tower", "--corpus",
                       str(tmp_path / "site" / "corpus.sqlite"))
    assert code == 0 and json.loads(out)["data"]["queries"][0]["results"][0]["url"] == "https://s.example/a.md"
    entity = small_world.load_entities()[0]
    code, out, _ = run(capsys, "tool", "image_search", str(small_world.root / entity["image"]),
                       "--index", str(small_world.image_index))
    obs = json.loads(out)
    assert code == 0 and obs["data"]["matches"][0]["url"] == entity["url"] and obs["images"]
    code, out, _ = run(capsys, "tool", "web_visit", entity["url"], "--mirror", str(small_world.mirror))
    assert code == 0 and entity["title"] in json.loads(out)["text"]
    code, out, _ = run(capsys, "tool", "web_visit", "http://127.0.0.1:9/", "--backend", "http")
    assert code == 1 and "loopback" in json.loads(out)["error"]
    code, _, err = run(capsys, "tool", "text_search", "q", "--backend", "serper", "--api-key-env", "NO_SUCH_VAR_X")
    assert code == 2 and err.count("\n") == 1 and "NO_SUCH_VAR_X" in err
    code, out, _ = run(capsys, "corpus", "images", str(small_world.root / "media"), "--out", str(tmp_path / "i.sqlite"))
    assert code == 0 and json.loads(out)["images"] == 30


def test_tool_commands_leave_no_scratch_folder_unless_it_holds_images(tmp_path, capsys, small_world, monkeypatch):
    import tempfile

    monkeypatch.setenv("R1V4_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    entity = small_world.load_entities()[0]
    code, _, _ = run(capsys, "tool", "web_visit", entity["url"], "--mirror", str(small_world.mirror))
    assert code == 0 and list((tmp_path / "tmp").iterdir()) == []
    code, out, _ = run(capsys, "tool", "image_search", str(small_world.root / entity["image"]),
                       "--index", str(small_world.image_index))
    thumbs = [im["path"] for im in json.loads(out)["images"]]
    assert code == 0 and thumbs and all(__import__("os").path.isfile(p) for p in thumbs)
