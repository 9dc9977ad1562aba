"""Task sets: our JSONL, and the benchmark files researchers already have on disk.

Our format (one task a line; image paths relative to the file's folder)::

    {"id": "zoom-0001", "question": "...", "images": ["images/zoom-0001.png"], "answer": "K7",
     "answers": ["K7"], "choices": {"A": "...", "B": "..."}, "category": "zoom", "split": "test",
     "meta": {...}}

`load_tasks(path)` also reads, without downloading anything:

- VLMEvalKit TSV files (`index`, `image` as base64 or `image_path`, `question`, `hint`, option columns
  `A`, `B`, ..., `answer`, `category`, `l2-category`, `split`); an `image` cell may hold the index of
  another row, as VLMEvalKit allows, or a list of images;
- Hugging Face `datasets` folders written by `save_to_disk` and parquet files with an Image feature;
- MMSearch / FVQA / BrowseComp-VL style JSON or JSONL (question, image path or inline image, gold
  answers as a list), and the offline world's `questions.jsonl`.

Images that arrive as bytes are written once, named by their sha256, under `image_dir` (default: the
cache folder's `eval-images/`), so every task's images are plain files the agent can open. A bad row is
a `TaskError` naming the file and the row; with `skip_bad=True` it is skipped and counted instead.
"""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import hashlib
import io
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..paths import write_once

FORMATS = ("jsonl", "json", "tsv", "hf", "parquet")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Column / key names the loaders accept for each field, in order of preference.
_ID_KEYS = ("id", "qid", "question_id", "sample_id", "index", "idx", "pid", "data_id")
_QUESTION_KEYS = ("question", "query", "prompt", "problem", "instruction")
_ANSWER_KEYS = ("answers", "answer", "gt_answer", "gold", "golds", "ground_truth", "label", "target")
_ALT_KEYS = ("alternative_gt_answers", "alt_answers", "aliases", "answer_aliases")
_IMAGE_KEYS = ("images", "image", "image_path", "image_paths", "query_image", "img", "image_file",
               "decoded_image", "picture")
_CHOICE_KEYS = ("choices", "options")
_CATEGORY_KEYS = ("category", "l2-category", "task", "subject", "type", "kind")


class TaskError(UsageError):
    """A task file, or one of its rows, that cannot be read: names the file, the row and the fix."""


@dataclass
class Task:
    """One question with its images and gold answer(s); `choices` makes it multiple choice (answer = letter)."""

    id: str
    question: str
    images: list[Path] = field(default_factory=list)
    answer: str = ""
    answers: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)
    category: str = ""
    split: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.answers and self.answer:
            self.answers = [self.answer]
        if not self.answer and self.answers:
            self.answer = self.answers[0]

    @property
    def golds(self) -> list[str]:
        """All accepted gold answers."""
        return list(self.answers) or ([self.answer] if self.answer else [])

    @property
    def gold_text(self) -> str | None:
        """For multiple choice: the text of the gold choice (the letter's option)."""
        return self.choices.get(self.answer) if self.choices else None

    def prompt(self) -> str:
        """The question as the model is asked it: hint, question, options and how to answer them."""
        parts = []
        hint = self.meta.get("hint")
        if isinstance(hint, str) and hint.strip():
            parts.append(f"Hint: {hint.strip()}")
        parts.append(self.question.strip())
        if self.choices:
            parts.append("Options:\n" + "\n".join(f"{k}. {v}" for k, v in self.choices.items()))
            parts.append("Answer with the option's letter.")
        return "\n".join(parts)

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        def rel(p: Path) -> str:
            if relative_to is not None:
                try:
                    return p.resolve().relative_to(relative_to.resolve()).as_posix()
                except ValueError:
                    pass
            return str(p)

        d: dict[str, Any] = {"id": self.id, "question": self.question, "images": [rel(p) for p in self.images],
                             "answer": self.answer, "answers": list(self.answers)}
        if self.choices:
            d["choices"] = dict(self.choices)
        d.update(category=self.category, split=self.split, meta=self.meta)
        return d


@dataclass
class TaskSet(Sequence):
    """The tasks read from one file, with what was skipped (one line each) and the format it was read as."""

    tasks: list[Task]
    source: Path
    format: str
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: Any) -> Any:
        return self.tasks[i]

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def by_id(self) -> dict[str, Task]:
        return {t.id: t for t in self.tasks}

    def summary(self) -> dict[str, Any]:
        """What was read: counts per category and split, choices, images and their sizes."""
        sizes = []
        for t in self.tasks:
            for p in t.images:
                size = image_size(p)
                if size:
                    sizes.append(size)
        pixels = sorted(w * h for w, h in sizes)
        mc = [t for t in self.tasks if t.choices]
        return {
            "file": str(self.source), "format": self.format, "tasks": len(self.tasks),
            "skipped": len(self.skipped),
            "categories": dict(Counter(t.category or "-" for t in self.tasks).most_common()),
            "splits": dict(Counter(t.split or "-" for t in self.tasks).most_common()),
            "multiple_choice": len(mc),
            "choices_per_question": dict(sorted(Counter(len(t.choices) for t in mc).items())),
            "gold_letters": dict(sorted(Counter(t.answer for t in mc).items())),
            "images": sum(len(t.images) for t in self.tasks),
            "images_per_task": dict(sorted(Counter(len(t.images) for t in self.tasks).items())),
            "image_size": _size_summary(sizes, pixels),
        }


def _size_summary(sizes: list[tuple[int, int]], pixels: list[int]) -> dict[str, Any]:
    if not sizes:
        return {}
    by_pixels = sorted(sizes, key=lambda s: s[0] * s[1])
    return {"min": "x".join(map(str, by_pixels[0])), "median": "x".join(map(str, by_pixels[len(sizes) // 2])),
            "max": "x".join(map(str, by_pixels[-1]))}


def image_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the file's header (the pixels are not decoded)."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as im:
            return im.size
    except (OSError, ValueError, SyntaxError):
        return None


# -- reading ---------------------------------------------------------------------------------------


class _Bad(Exception):
    """A row that cannot become a task: the message says what is wrong with it."""


def default_image_dir() -> Path:
    from ..paths import cache_root

    return cache_root() / "eval-images"


def detect_format(path: Path) -> str:
    if path.is_dir():
        if any((path / n).is_file() for n in ("dataset_info.json", "state.json", "dataset_dict.json")):
            return "hf"
        raise TaskError(f"{path}: a folder that is not a saved Hugging Face dataset (no dataset_info.json, "
                        "state.json or dataset_dict.json); pass a task file (.jsonl, .json, .tsv, .parquet)")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix in (".tsv", ".csv"):
        return "tsv"
    if suffix == ".parquet":
        return "parquet"
    raise TaskError(f"{path}: unknown task file type {suffix or '(no suffix)'!r}; use .jsonl, .json, .tsv, "
                    ".parquet or a saved datasets folder (or pass format=)")


def load_tasks(path: str | Path, *, skip_bad: bool = False, format: str | None = None,
               image_dir: str | Path | None = None, limit: int | None = None) -> TaskSet:
    """Read a task file in any supported format; a bad row raises `TaskError` unless `skip_bad`."""
    p = Path(path)
    if not p.exists():
        raise TaskError(f"{p}: no such task file (check the path)")
    fmt = format or detect_format(p)
    if fmt not in FORMATS:
        raise TaskError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    images = _ImageWriter(Path(image_dir) if image_dir is not None else default_image_dir())
    rows = {"jsonl": _jsonl_rows, "json": _json_rows, "tsv": _tsv_rows, "hf": _hf_rows,
            "parquet": _parquet_rows}[fmt](p)
    base = p if p.is_dir() else p.parent
    tasks: list[Task] = []
    skipped: list[str] = []
    seen: set[str] = set()
    converter = _from_tsv if fmt == "tsv" else _from_record
    for where, row in rows:
        if limit is not None and len(tasks) >= limit:
            break
        try:
            task = converter(row, base, images, where)
            if task.id in seen:
                raise _Bad(f"id {task.id!r} appears twice (ids must be unique within the file)")
            seen.add(task.id)
            tasks.append(task)
        except _Bad as exc:
            line = f"{p}:{where}: {exc}"
            if not skip_bad:
                raise TaskError(f"{line} (fix the row, or pass --skip-bad / skip_bad=True to skip it)") from None
            skipped.append(line)
    if not tasks:
        raise TaskError(f"{p}: no tasks read" + (f" ({len(skipped)} bad rows skipped)" if skipped else ""))
    return TaskSet(tasks, p, fmt, skipped)


def write_tasks(path: str | Path, tasks: Sequence[Task]) -> Path:
    """Write tasks as our JSONL, image paths relative to the file where they can be."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as fh:
        for t in tasks:
            fh.write(json.dumps(t.to_json(p.parent), ensure_ascii=False) + "\n")
    return p


# -- row sources: (where, record) pairs, where = "line 3" / "row 3" ---------------------------------


def _jsonl_rows(p: Path) -> Iterator[tuple[str, Any]]:
    with p.open(encoding="utf-8-sig", errors="strict") as fh:
        try:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield f"line {n}", json.loads(line)
                except json.JSONDecodeError as exc:
                    yield f"line {n}", _Bad(f"not valid JSON ({exc.msg} at column {exc.colno})")
        except UnicodeDecodeError:
            raise TaskError(f"{p}: not UTF-8 text; is this a task file?") from None


def _json_rows(p: Path) -> Iterator[tuple[str, Any]]:
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TaskError(f"{p}: not a JSON file ({exc}); JSON Lines files end in .jsonl") from None
    if isinstance(data, dict):
        for key in ("data", "questions", "tasks", "examples", "items"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            if all(isinstance(v, dict) for v in data.values()):  # {id: record}
                data = [{"id": k, **v} for k, v in data.items()]
    if not isinstance(data, list):
        raise TaskError(f"{p}: expected a JSON list of questions (or an object with a 'data' list)")
    for n, rec in enumerate(data, start=1):
        yield f"item {n}", rec


def _tsv_rows(p: Path) -> Iterator[tuple[str, Any]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # base64 images make very long fields
    delimiter = "," if p.suffix.lower() == ".csv" else "\t"
    with p.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        if not reader.fieldnames or "question" not in reader.fieldnames:
            raise TaskError(f"{p}: no 'question' column in the header (VLMEvalKit TSV files have index, "
                            "image or image_path, question, answer, ...)")
        rows = list(reader)
    by_index = {str(r.get("index", "")).strip(): r for r in rows if str(r.get("index", "")).strip()}
    for n, row in enumerate(rows, start=1):
        row["__by_index__"] = by_index
        yield f"row {n}", row


def _hf_rows(p: Path) -> Iterator[tuple[str, Any]]:
    datasets = _need_datasets()
    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as exc:  # datasets raises many kinds for a damaged folder
        raise TaskError(f"{p}: cannot read the saved dataset ({type(exc).__name__}: {exc})") from None
    parts = list(ds.items()) if isinstance(ds, datasets.DatasetDict) else [("", ds)]
    for split, part in parts:
        part = _undecoded(part, datasets)
        for n, rec in enumerate(part, start=1):
            if split:
                rec = {**rec, "split": rec.get("split") or split}
                if len(parts) > 1:  # the same ids recur across splits: "test/a1", with the row's own id kept
                    tid = _first(rec, _ID_KEYS)
                    rec = {**rec, "id": f"{split}/{_text(tid) if tid is not None else n}", "source_id": tid}
            yield (f"{split} row {n}" if split else f"row {n}"), rec


def _undecoded(ds: Any, datasets: Any) -> Any:
    """Image columns as {bytes, path}: a broken image is then this row's error, not the whole file's."""
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image):
            ds = ds.cast_column(name, datasets.Image(decode=False))
        elif isinstance(feature, datasets.Sequence) and isinstance(feature.feature, datasets.Image):
            ds = ds.cast_column(name, datasets.Sequence(datasets.Image(decode=False)))
        elif isinstance(feature, list) and feature and isinstance(feature[0], datasets.Image):
            ds = ds.cast_column(name, [datasets.Image(decode=False)])
    return ds


def _parquet_rows(p: Path) -> Iterator[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TaskError("reading parquet needs pyarrow: pip install 'r1v4-nb[eval]'") from None
    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow's errors for a damaged file
        raise TaskError(f"{p}: not a readable parquet file ({exc})") from None
    for n, rec in enumerate(table.to_pylist(), start=1):
        yield f"row {n}", rec


def _need_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise TaskError("reading a saved datasets folder needs the datasets package: "
                        "pip install 'r1v4-nb[eval]'") from None
    return datasets


# -- rows to tasks ---------------------------------------------------------------------------------


class _ImageWriter:
    """Images given as bytes become files named by their hash (written once, atomically)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def from_bytes(self, data: bytes) -> Path:
        from PIL import Image as PILImage

        try:
            with PILImage.open(io.BytesIO(data)) as im:
                im.verify()
                fmt = (im.format or "png").lower()
        except Exception as exc:  # PIL raises many kinds for a broken image
            raise _Bad(f"image does not decode ({type(exc).__name__}: {exc})") from None
        ext = {"jpeg": "jpg"}.get(fmt, fmt)
        digest = hashlib.sha256(data).hexdigest()
        return write_once(self.folder / digest[:2] / f"{digest}.{ext}", data)

    def from_base64(self, text: str) -> Path:
        s = text.strip()
        if s.startswith("data:"):
            s = s.split(",", 1)[-1]
        try:
            data = base64.b64decode("".join(s.split()), validate=True)
        except (binascii.Error, ValueError):
            raise _Bad("image is neither a file path nor valid base64") from None
        return self.from_bytes(data)


def _check_file(path: Path) -> Path:
    if not path.is_file():
        raise _Bad(f"image not found: {path} (paths are relative to the task file's folder)")
    if image_size(path) is None:
        raise _Bad(f"image does not decode: {path}")
    return path


def _image_from_value(value: Any, base: Path, images: _ImageWriter) -> Path:
    """One image from a path, base64 text, bytes, a {bytes, path} cell or a PIL image."""
    if isinstance(value, (bytes, bytearray)):
        return images.from_bytes(bytes(value))
    if isinstance(value, dict):
        if value.get("bytes"):
            return images.from_bytes(bytes(value["bytes"]))
        if value.get("path"):
            return _image_from_value(value["path"], base, images)
        raise _Bad("image cell has neither bytes nor a path")
    if hasattr(value, "save") and hasattr(value, "size"):  # a PIL image
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return images.from_bytes(buf.getvalue())
    if isinstance(value, str):
        s = value.strip()
        if not s:
            raise _Bad("empty image")
        if re.match(r"^(https?|ftp)://", s):
            raise _Bad(f"image is a URL ({s[:80]}); nothing is downloaded: save it and give the file path")
        if len(s) < 1024 and not s.startswith("data:"):
            p = Path(s).expanduser()
            p = p if p.is_absolute() else base / p
            if p.is_file() or re.search(r"\.(png|jpe?g|gif|bmp|webp|tiff?)$", s, re.I):
                return _check_file(p)
        return images.from_base64(s)
    raise _Bad(f"image of unexpected type {type(value).__name__}")


def _images(value: Any, base: Path, images: _ImageWriter) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [_image_from_value(v, base, images) for v in value if v is not None]
    return [_image_from_value(value, base, images)]


def _first(rec: dict[str, Any], keys: Sequence[str]) -> Any:
    for k in keys:
        v = rec.get(k)
        if v is not None and not (isinstance(v, str) and not v.strip()) and v != []:
            return v
    return None


def _text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _gold_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [_text(v) for v in value if v is not None and _text(v)]
    if isinstance(value, dict):  # {"text": [...]} as some QA sets write it
        for k in ("text", "answers", "value"):
            if k in value:
                return _gold_list(value[k])
        raise _Bad("gold answer is an object without 'text'")
    return [_text(value)] if _text(value) else []


def _choices(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise _Bad("choices are neither a list nor an object") from None
    if isinstance(value, dict):
        out = {str(k).strip().upper(): _text(v) for k, v in value.items()}
    elif isinstance(value, (list, tuple)):
        if len(value) > len(LETTERS):
            raise _Bad(f"{len(value)} choices; at most {len(LETTERS)}")
        out = {LETTERS[i]: _text(v) for i, v in enumerate(value)}
    else:
        raise _Bad("choices are neither a list nor an object")
    bad = [k for k in out if len(k) != 1 or k not in LETTERS]
    if bad:
        raise _Bad(f"choice key {bad[0]!r} is not a single letter A-Z")
    return out


def _mc_answer(golds: list[str], choices: dict[str, str]) -> list[str]:
    """A multiple-choice gold is a letter; a gold given as the choice's text (or its index) becomes one."""
    out = []
    for g in golds:
        up = g.strip().strip("()").upper()
        if up in choices:
            out.append(up)
            continue
        by_text = [k for k, v in choices.items() if v.strip().lower() == g.strip().lower()]
        if by_text:
            out.append(by_text[0])
        elif g.isdigit() and int(g) < len(choices):
            out.append(list(choices)[int(g)])
        else:
            raise _Bad(f"gold answer {g!r} is not one of the choices {', '.join(choices)}")
    return out


def _from_record(rec: Any, base: Path, images: _ImageWriter, where: str) -> Task:
    """Our JSONL, MMSearch / FVQA / BrowseComp-VL style records, world questions and HF / parquet rows."""
    if isinstance(rec, _Bad):
        raise rec
    if not isinstance(rec, dict):
        raise _Bad(f"expected a JSON object, got {type(rec).__name__}")
    question = _first(rec, _QUESTION_KEYS)
    if not isinstance(question, str) or not question.strip():
        raise _Bad("no question (keys tried: " + ", ".join(_QUESTION_KEYS) + ")")
    golds = []
    for k in _ANSWER_KEYS:
        golds = _gold_list(rec.get(k))
        if golds:
            break
    for k in _ALT_KEYS:
        golds += [g for g in _gold_list(rec.get(k)) if g not in golds]
    if not golds:
        raise _Bad("no gold answer (keys tried: " + ", ".join(_ANSWER_KEYS) + ")")
    choices = _choices(_first(rec, _CHOICE_KEYS))
    if not choices:
        choices = {k: _text(rec[k]) for k in LETTERS if isinstance(rec.get(k), (str, int, float))
                   and _text(rec[k]) and k in rec}
        if len(choices) < 2:
            choices = {}
    if choices:
        golds = _mc_answer(golds, choices)
    image_value = _first(rec, _IMAGE_KEYS)
    if image_value is None:  # image_1, image_2, ... columns (MMMU style)
        numbered = [rec[k] for k in sorted((k for k in rec if re.fullmatch(r"image_\d+", k)),
                                           key=lambda k: int(k.split("_")[1])) if rec[k] is not None]
        image_value = numbered or None
    paths = _images(image_value, base, images)
    tid = _first(rec, _ID_KEYS)
    known = set(_ID_KEYS + _QUESTION_KEYS + _ANSWER_KEYS + _ALT_KEYS + _IMAGE_KEYS + _CHOICE_KEYS) | set(LETTERS)
    meta = dict(rec.get("meta") or {}) if isinstance(rec.get("meta"), dict) else {}
    for k, v in rec.items():
        if k not in known and k not in ("meta", "category", "split") and not re.fullmatch(r"image_\d+", k):
            if isinstance(v, (str, int, float, bool, list, dict)) or v is None:
                meta.setdefault(k, v)
    category = _first(rec, _CATEGORY_KEYS)
    return Task(id=_text(tid) if tid is not None else where.split()[-1], question=question.strip(), images=paths,
                answer=golds[0], answers=golds, choices=choices,
                category=_text(category) if category is not None else "",
                split=_text(rec.get("split") or ""), meta=meta)


def _nan(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip().lower() in ("", "nan", "none"))


def _from_tsv(row: dict[str, Any], base: Path, images: _ImageWriter, where: str) -> Task:
    """A VLMEvalKit TSV row; an image cell holding another row's index uses that row's image."""
    by_index = row.pop("__by_index__")
    index = str(row.get("index", "")).strip()
    question = row.get("question")
    if _nan(question):
        raise _Bad("no question")
    answer = row.get("answer")
    if _nan(answer):
        raise _Bad("no answer")
    choices = {k: str(row[k]).strip() for k in LETTERS if k in row and not _nan(row[k])}
    golds = [str(answer).strip()]
    if choices:
        golds = _mc_answer(golds, choices)
    paths: list[Path] = []
    if not _nan(row.get("image_path")) and _nan(row.get("image")):
        paths = _images(_listish(row["image_path"]), base, images)
    else:
        value = row.get("image")
        seen = {index}
        while isinstance(value, str) and value.strip() in by_index and len(value.strip()) <= 64:
            ref = value.strip()
            if ref in seen:
                raise _Bad(f"image refers to row index {ref}, which refers back (a loop)")
            seen.add(ref)
            value = by_index[ref].get("image")
        if _nan(value):
            raise _Bad("no image (neither an image nor an image_path cell)")
        paths = _images(_listish(value), base, images)
    meta: dict[str, Any] = {}
    for k, v in row.items():
        if k in ("index", "image", "image_path", "question", "answer", "category", "split") or k in LETTERS:
            continue
        if not _nan(v):
            meta[k] = v
    category = row.get("category")
    return Task(id=index or where.split()[-1], question=str(question).strip(), images=paths, answer=golds[0],
                answers=golds, choices=choices, category="" if _nan(category) else str(category).strip(),
                split="" if _nan(row.get("split")) else str(row["split"]).strip(), meta=meta)


def _listish(value: Any) -> Any:
    """VLMEvalKit writes several images as a Python list literal in one cell."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise _Bad("image cell looks like a list but does not parse") from None
        if isinstance(parsed, list):
            return parsed
    return value


__all__ = ["FORMATS", "Task", "TaskError", "TaskSet", "detect_format", "image_size", "load_tasks",
           "write_tasks"]
