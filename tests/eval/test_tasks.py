"""Task loaders on small files written here: our JSONL, VLMEvalKit TSV, a saved datasets folder, parquet, JSON."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from r1v4_nb.eval.tasks import Task, TaskError, load_tasks, write_tasks


def _png(color: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture
def imgdir(tmp_path: Path) -> Path:
    return tmp_path / "img-cache"


def test_our_jsonl(tmp_path: Path, imgdir: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(_png((255, 0, 0)))
    rows = [
        {"id": "zoom-0001", "question": "What code is on the red plaque?", "images": ["images/a.png"],
         "answer": "K7", "category": "zoom", "split": "test", "meta": {"seed": 3}},
        {"id": "mc-1", "question": "Which colour?", "images": ["images/a.png"], "answer": None,
         "answers": ["B"], "choices": {"A": "blue", "B": "red"}, "category": "mc", "split": "test", "meta": {}},
    ]
    f = tmp_path / "tasks.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ts = load_tasks(f, image_dir=imgdir)
    assert ts.format == "jsonl" and len(ts) == 2
    t0, t1 = ts
    assert t0.images == [tmp_path / "images" / "a.png"] and t0.golds == ["K7"] and t0.meta == {"seed": 3}
    assert t1.answer == "B" and t1.gold_text == "red" and "B. red" in t1.prompt()
    s = ts.summary()
    assert s["categories"] == {"zoom": 1, "mc": 1} and s["image_size"]["max"] == "32x24"
    # round trip through write_tasks
    out = write_tasks(tmp_path / "copy.jsonl", list(ts))
    again = load_tasks(out, image_dir=imgdir)
    assert [t.to_json() for t in again] == [t.to_json() for t in ts]


def test_jsonl_bad_rows_name_file_and_line(tmp_path: Path, imgdir: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"id": "1", "question": "q?", "answer": "x"}) + "\n"
                 + json.dumps({"id": "2", "question": "q?", "images": ["missing.png"], "answer": "x"}) + "\n"
                 + json.dumps({"id": "3", "question": "q?"}) + "\n" + "{not json\n")
    with pytest.raises(TaskError) as e:
        load_tasks(f, image_dir=imgdir)
    msg = str(e.value)
    assert f"{f}:line 2:" in msg and "image not found" in msg and "--skip-bad" in msg and "\n" not in msg
    ts = load_tasks(f, skip_bad=True, image_dir=imgdir)
    assert [t.id for t in ts] == ["1"] and len(ts.skipped) == 3
    assert "line 3: no gold answer" in ts.skipped[1] and "line 4: not valid JSON" in ts.skipped[2]


def _tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(header)
        w.writerows(rows)


def test_vlmevalkit_tsv_base64_and_index_references(tmp_path: Path, imgdir: Path) -> None:
    red, blue = _b64(_png((255, 0, 0))), _b64(_png((0, 0, 255), (40, 30)))
    f = tmp_path / "HRBench.tsv"
    header = ["index", "image", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "split"]
    _tsv(f, header, [
        ["0", red, "What colour is the car?", "", "red", "blue", "green", "white", "A", "single", "color", "dev"],
        ["1", "0", "Is the car on the left?", "Look closely.", "yes", "no", "", "", "B", "single", "pos", "dev"],
        ["2", blue, "Which shape?", "", "circle", "square", "", "", "square", "cross", "shape", "test"],
        ["3", str([red, blue]), "Same colour?", "", "yes", "no", "", "", "B", "cross", "pair", "test"],
    ])
    ts = load_tasks(f, image_dir=imgdir)
    assert ts.format == "tsv" and [t.id for t in ts] == ["0", "1", "2", "3"]
    t0, t1, t2, t3 = ts
    assert t0.choices == {"A": "red", "B": "blue", "C": "green", "D": "white"} and t0.answer == "A"
    assert t1.images == t0.images and t1.choices == {"A": "yes", "B": "no"}  # index 1's image is row 0's
    assert t1.prompt().startswith("Hint: Look closely.\nIs the car on the left?")
    assert t2.answer == "B"  # gold written as the option's text becomes its letter
    assert len(t3.images) == 2 and t3.images[0] == t0.images[0]
    assert t0.meta["l2-category"] == "color" and t0.split == "dev" and t0.category == "single"
    assert Image.open(t2.images[0]).size == (40, 30)
    assert ts.summary()["splits"] == {"dev": 2, "test": 2}


def test_vlmevalkit_tsv_image_path_and_bad_rows(tmp_path: Path, imgdir: Path) -> None:
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "x.png").write_bytes(_png((0, 255, 0)))
    f = tmp_path / "vstar.tsv"
    _tsv(f, ["index", "image_path", "image", "question", "A", "B", "answer", "category"], [
        ["10", "pics/x.png", "", "What is it?", "a", "b", "A", "attr"],
        ["11", "", "bm90IGFuIGltYWdl", "What is it?", "a", "b", "A", "attr"],  # base64 of text
        ["12", "pics/x.png", "", "What is it?", "a", "b", "", "attr"],
        ["13", "", "99", "What is it?", "a", "b", "E", "attr"],
    ])
    with pytest.raises(TaskError, match=r"vstar.tsv:row 2: image does not decode"):
        load_tasks(f, image_dir=imgdir)
    ts = load_tasks(f, skip_bad=True, image_dir=imgdir)
    assert [t.id for t in ts] == ["10"] and len(ts.skipped) == 3
    assert "row 3: no answer" in ts.skipped[1]
    assert "row 4:" in ts.skipped[2]


def test_saved_datasets_folder_and_parquet(tmp_path: Path, imgdir: Path) -> None:
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"question_id": datasets.Value("string"), "question": datasets.Value("string"),
                               "image": datasets.Image(), "options": datasets.Sequence(datasets.Value("string")),
                               "answer": datasets.Value("string"), "category": datasets.Value("string")})
    rows = {"question_id": ["a1", "a2"], "question": ["Which colour?", "Which colour now?"],
            "image": [Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (20, 10), (0, 0, 255))],
            "options": [["red", "blue"], ["red", "blue"]], "answer": ["A", "blue"], "category": ["c", "c"]}
    ds = datasets.Dataset.from_dict(rows, features=feats)
    datasets.DatasetDict({"test": ds, "val": ds.select([0])}).save_to_disk(str(tmp_path / "saved"))
    ts = load_tasks(tmp_path / "saved", image_dir=imgdir)
    assert ts.format == "hf" and len(ts) == 3
    assert {t.split for t in ts} == {"test", "val"}
    t = ts.tasks[1]
    assert t.id == "test/a2" and t.meta["source_id"] == "a2" and t.answer == "B" and t.choices == {"A": "red", "B": "blue"}
    assert Image.open(t.images[0]).size == (20, 10)
    ds.to_parquet(str(tmp_path / "bench.parquet"))
    pq = load_tasks(tmp_path / "bench.parquet", image_dir=imgdir)
    assert pq.format == "parquet" and [x.id for x in pq] == ["a1", "a2"]
    assert pq.tasks[0].images == ts.tasks[0].images  # the same bytes: the same file


def test_search_style_json(tmp_path: Path, imgdir: Path) -> None:
    (tmp_path / "q.jpg").write_bytes(_png((1, 2, 3)))
    f = tmp_path / "mmsearch.json"
    f.write_text(json.dumps({"data": [
        {"sample_id": "s1", "query": "Who built this?", "query_image": "q.jpg", "gt_answer": "Ada",
         "alternative_gt_answers": ["Ada Lovelace"], "area": "news"},
        {"sample_id": "s2", "query": "Where is it?", "image": "data:image/png;base64," + _b64(_png((9, 9, 9))),
         "answer": ["Paris", "paris, france"]},
        {"sample_id": "s3", "query": "Online?", "image": "https://example.org/a.png", "answer": "x"},
    ]}))
    ts = load_tasks(f, skip_bad=True, image_dir=imgdir)
    assert [t.id for t in ts] == ["s1", "s2"] and "is a URL" in ts.skipped[0]
    assert ts.tasks[0].golds == ["Ada", "Ada Lovelace"] and ts.tasks[0].meta["area"] == "news"
    assert ts.tasks[1].golds == ["Paris", "paris, france"] and ts.tasks[1].images[0].is_file()


def test_world_questions(tmp_path: Path, imgdir: Path) -> None:
    from r1v4_nb.world import ensure_world

    world = ensure_world()
    ts = load_tasks(world.questions, image_dir=imgdir)
    assert len(ts) == len(world.load_questions())
    with_image = [t for t in ts if t.images]
    assert with_image and all(p.is_file() for t in with_image for p in t.images)
    assert all(isinstance(t.meta.get("path"), list) for t in ts)


def test_task_golds_and_unknown_format(tmp_path: Path) -> None:
    t = Task("x", "q", answers=["a", "b"])
    assert t.answer == "a" and t.golds == ["a", "b"]
    (tmp_path / "t.xlsx").write_text("")
    with pytest.raises(TaskError, match="unknown task file type"):
        load_tasks(tmp_path / "t.xlsx")
    with pytest.raises(TaskError, match="no such task file"):
        load_tasks(tmp_path / "nope.jsonl")


def test_cli_eval_tasks(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"id": "1", "question": "q?", "answer": "x", "category": "c"}) + "\n"
                 + json.dumps({"id": "2", "question": "q?"}) + "\n")
    cmd = [sys.executable, "-m", "r1v4_nb.cli", "eval", "tasks", str(f)]
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "line 2: no gold answer" in bad.stderr
    ok = subprocess.run([*cmd, "--skip-bad", "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    s = json.loads(ok.stdout)
    assert s["tasks"] == 1 and s["skipped"] == 1 and s["categories"] == {"c": 1}
    text = subprocess.run([*cmd, "--skip-bad"], capture_output=True, text=True)
    assert "tasks" in text.stdout and "skipped" in text.stdout
