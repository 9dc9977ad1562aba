"""Exporters and importers: round trips through ShareGPT and the hosted R1V4 reply, export shapes."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from r1v4_nb.dialects.context import result_text
from r1v4_nb.errors import UsageError
from r1v4_nb.formats import export, export_text
from r1v4_nb.formats.hf import to_hf, to_hf_record
from r1v4_nb.formats.openai import to_openai
from r1v4_nb.formats.r1v4_api import import_reply
from r1v4_nb.formats.sharegpt import (
    from_sharegpt,
    import_file,
    llamafactory_problems,
    load_records,
    to_sharegpt,
)
from r1v4_nb.records import ModelStep, ToolStep
from r1v4_nb.trajectory import Trajectory, read
from tests.support.trajectory import ANSWER, QUESTION, essence, write_sample


@pytest.fixture
def traj(tmp_path: Path) -> Trajectory:
    return read(write_sample(tmp_path / "runs" / "run.jsonl"))


def image_bytes(t: Trajectory) -> list[bytes]:
    return [im.path.read_bytes() for im in t.all_images()]


# --- ShareGPT ---------------------------------------------------------------------------------------------


def test_sharegpt_round_trip_gives_the_same_steps_and_identical_images(traj: Trajectory, tmp_path: Path) -> None:
    out = export([traj], "sharegpt", tmp_path / "data" / "train.json")
    (record,) = load_records(out)
    back = from_sharegpt(record, tmp_path / "back" / "run.jsonl", base=out.parent)
    assert [essence(s) for s in back.steps] == [essence(s) for s in traj.steps]
    assert back.header.question == QUESTION and back.header.system_prompt == traj.header.system_prompt
    assert back.header.id == traj.header.id and back.header.mode == "deepresearch"
    assert back.answer == ANSWER and back.end is not None and back.end.reason == "answered"
    assert image_bytes(back) == image_bytes(traj)
    assert back.header.images[0].provenance.kind == "input"
    assert [im.provenance.kind for im in back.tool_steps[1].observation.images] == ["search", "search"]


def test_sharegpt_record_is_what_llamafactory_reads(traj: Trajectory, tmp_path: Path) -> None:
    record = to_sharegpt(traj, root=tmp_path)
    roles = [m["from"] for m in record["conversations"]]
    assert roles == ["human", "function_call", "observation", "function_call", "observation",
                     "function_call", "observation", "gpt"]
    assert llamafactory_problems(record) == []
    assert record["conversations"][0]["value"] == "<image>" + QUESTION
    call = record["conversations"][1]["value"]
    # LLaMA-Factory's qwen3_vl template: thought words '<think>\n' '\n</think>\n\n', tool-call words
    # '<tool_call>' '</tool_call>'; its function formatter takes the first <tool_call>...</tool_call>
    # (non-greedy) and json.loads it: every call needs "name" and "arguments"
    assert call.startswith("<think>\nThe sign is small; crop it.\n</think>\n\n<tool_call>")
    inner = re.search(r"<tool_call>(.*?)</tool_call>", call, re.DOTALL).group(1)
    assert json.loads(inner) == {"name": "code", "arguments": traj.steps[0].calls[0].arguments}
    assert call.replace(re.search(r"<tool_call>(.*?)</tool_call>", call, re.DOTALL).group(0), "") == \
        "<think>\nThe sign is small; crop it.\n</think>\n\n"
    # images in placeholder order: input, crop, two search thumbnails; relative to the file's folder
    expected = [im.sha256 for im in traj.all_images()]
    assert [Path(p).stem for p in record["images"]] == expected
    assert all((tmp_path / p).is_file() for p in record["images"])
    # the failed visit shows the model's error text; the budget note follows it after a blank line
    obs = record["conversations"][6]
    assert obs["value"] == "Error: refused: a loopback address\n\n" + traj.steps[6].text
    assert obs["notes"] == [traj.steps[6].text] and obs["errors"] == ["refused: a loopback address"]


def test_sharegpt_without_hints_still_gives_the_same_calls_results_and_images(traj: Trajectory,
                                                                                tmp_path: Path) -> None:
    record = to_sharegpt(traj)
    for m in record["conversations"]:
        for hint in ("raw", "notes", "errors"):
            m.pop(hint, None)
    back = from_sharegpt(record, tmp_path / "plain.jsonl")
    calls = [(c.name, c.arguments) for s in back.model_steps for c in s.calls]
    assert calls == [(c.name, c.arguments) for s in traj.model_steps for c in s.calls]
    assert [result_text(s.observation) for s in back.tool_steps][:2] == [s.observation.text
                                                                        for s in traj.tool_steps][:2]
    assert image_bytes(back) == image_bytes(traj)
    assert back.answer == ANSWER
    # a rebuilt turn parses the same: thinking and call in R1V4 tags
    assert [s.kind for s in back.steps[0].segments] == ["think", "tool_call"]


def test_an_edited_value_wins_over_a_stale_raw_hint(traj: Trajectory, tmp_path: Path) -> None:
    record = to_sharegpt(traj)
    call = record["conversations"][3]
    call["value"] = call["value"].replace('"crop.png"', '"photo.png"')
    back = from_sharegpt(record, tmp_path / "edited.jsonl")
    assert back.steps[2].calls[0].arguments == {"image_paths": ["photo.png"]}
    assert "photo.png" in back.steps[2].text


def test_sharegpt_import_of_a_foreign_record(tmp_path: Path) -> None:
    """A record written by someone else: role/content keys, JSON results, arguments as a string."""
    from tests.support.trajectory import make_png

    make_png(tmp_path / "imgs" / "q.png", (1, 1, 1))
    make_png(tmp_path / "imgs" / "z.png", (2, 2, 2))
    data = [{"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "<image>Which city?"},
        {"role": "function_call", "content": '{"name": "code", "arguments": "{\\"code\\": \\"zoom()\\"}"}'},
        {"role": "observation", "content": '{"result": "zoomed", "type": "code"}<image>'},
        {"role": "assistant", "content": "<answer>Zürich</answer>"}],
        "images": ["imgs/q.png", "imgs/z.png"]}]
    (tmp_path / "set.json").write_text(json.dumps(data), encoding="utf-8")
    (path,) = import_file(tmp_path / "set.json", tmp_path / "out")
    t = read(path)
    assert t.header.system_prompt == "Be brief." and t.header.question == "Which city?"
    assert t.steps[0].calls[0].arguments == {"code": "zoom()"}
    assert t.steps[1].observation.text == "zoomed" and t.steps[1].observation.images[0].provenance.kind == "code"
    assert t.answer == "Zürich"
    (tmp_path / "twice.json").write_text(json.dumps([{**data[0], "id": "same"}] * 2), encoding="utf-8")
    assert [p.name for p in import_file(tmp_path / "twice.json", tmp_path / "out")] == ["same.jsonl",
                                                                                       "same-1.jsonl"]


@pytest.mark.parametrize("change, phrase", [
    (lambda r: r["images"].pop(), "more <image> placeholders"),
    (lambda r: r["images"].append(r["images"][0]), "lists 5 images but has 4"),
    (lambda r: r["conversations"].pop(0), "must start with a human message"),
    (lambda r: r["images"].__setitem__(0, "nowhere.png"), "image nowhere.png not found"),
])
def test_sharegpt_import_errors_are_one_line(traj: Trajectory, tmp_path: Path, change: Any, phrase: str) -> None:
    record = to_sharegpt(traj)
    change(record)
    with pytest.raises(UsageError, match=phrase):
        from_sharegpt(record, tmp_path / "bad.jsonl")


# --- the hosted R1V4 API ----------------------------------------------------------------------------------


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def hosted_reply(t: Trajectory, urls_inside_json: bool = True) -> dict[str, Any]:
    """What the hosted API returns for this run: one assistant string, observations with inline images."""
    content = ""
    for s in t.steps:
        if isinstance(s, ModelStep):
            content += s.text
        elif isinstance(s, ToolStep):
            urls = [data_url(im.path) for im in s.observation.images]
            if urls_inside_json:
                body = json.dumps({"result": s.observation.text, "type": s.call.name, "images": urls})
            else:
                body = json.dumps({"result": s.observation.text, "type": s.call.name}) + " " + " ".join(urls)
            content += f"\n<observation>{body}</observation>\n"
    request = {"model": "skywork/r1v4-lite", "enable_search": True, "temperature": 0.2, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(t.header.images[0].path)}},
                                     {"type": "text", "text": t.header.question}]}]}
    response = {"id": "chatcmpl-42", "model": "skywork/r1v4-lite", "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1234, "completion_tokens": 567, "total_tokens": 1801}}
    return {"request": request, "response": response}


@pytest.mark.parametrize("inside", [True, False], ids=["urls-in-json", "urls-after-json"])
def test_hosted_reply_round_trip(tmp_path: Path, inside: bool) -> None:
    t = read(write_sample(tmp_path / "runs" / "hosted.jsonl", hosted=True))
    reply = tmp_path / "reply.json"
    reply.write_text(json.dumps(hosted_reply(t, inside)), encoding="utf-8")
    back = import_reply(reply, tmp_path / "imported" / "run.jsonl")
    assert back.warnings == []
    assert [s.type for s in back.steps] == [s.type for s in t.steps]
    for a, b in zip(back.steps, t.steps, strict=True):
        if isinstance(b, ModelStep):
            assert a.text.strip() == b.text.strip() and essence(a)["segments"] == essence(b)["segments"]
        else:
            assert essence(a) == essence(b)
    assert image_bytes(back) == image_bytes(t)
    assert [im.provenance.kind for s in back.tool_steps for im in s.observation.images] == ["code", "search",
                                                                                          "search"]
    h = back.header
    assert h.question == QUESTION and h.mode == "deepresearch" and h.model["name"] == "skywork/r1v4-lite"
    assert h.settings == {"temperature": 0.2, "enable_search": True}
    assert {tool["name"] for tool in h.tools} == {"code", "image_search"}
    assert back.end is not None and back.end.answer == ANSWER and back.end.usage["completion_tokens"] == 567
    assert "base64" not in back.path.read_text(encoding="utf-8")


def test_hosted_reply_in_the_batch_scripts_shape_and_cut_short(tmp_path: Path) -> None:
    t = read(write_sample(tmp_path / "runs" / "hosted.jsonl", hosted=True))
    content = hosted_reply(t)["response"]["choices"][0]["message"]["content"]
    cut = content[:content.index("</observation>", content.index("image_search"))]  # mid second observation
    photo = t.header.images[0].path
    line = {"image": str(photo), "question": "Which sign?", "response": {"full_response": cut}}
    back = import_reply(line, tmp_path / "cut.jsonl")
    assert [s.type for s in back.steps] == ["model", "tool", "model", "tool"]
    assert back.header.question == "Which sign?" and back.header.images[0].sha256 == t.header.images[0].sha256
    assert any("not closed" in w for w in back.warnings)
    assert back.answer is None and back.end is not None and back.end.reason == "no_answer"
    assert len(back.steps[3].observation.images) == 2


def test_hosted_reply_question_and_images_from_the_command_line(tmp_path: Path) -> None:
    t = read(write_sample(tmp_path / "runs" / "hosted.jsonl", hosted=True))
    only_response = hosted_reply(t)["response"]
    back = import_reply(only_response, tmp_path / "r.jsonl", question="Q?", images=[t.header.images[0].path])
    assert back.header.question == "Q?" and len(back.header.images) == 1
    bare = import_reply(only_response, tmp_path / "bare.jsonl")
    assert any("--question" in w for w in bare.warnings) and bare.header.images == []


@pytest.mark.parametrize("doc, phrase", [
    ({"id": "x"}, "no chat completion found"),
    ({"choices": []}, "no choices"),
    ({"choices": [{"message": {"content": "  "}}]}, "empty"),
    ({"response": {"error": "rate limited"}}, "an error, not a run"),
])
def test_hosted_reply_errors(tmp_path: Path, doc: dict[str, Any], phrase: str) -> None:
    with pytest.raises(UsageError, match=phrase):
        import_reply(doc, tmp_path / "x.jsonl")


# --- OpenAI and Hugging Face ------------------------------------------------------------------------------


def test_openai_export_inlines_images_in_order_as_data_urls(traj: Trajectory) -> None:
    messages = to_openai(traj)
    assert [m["role"] for m in messages] == ["system", "user"] + ["assistant", "user"] * 3 + ["system", "assistant"]
    parts = [p for m in messages if isinstance(m["content"], list) for p in m["content"]]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert [base64.b64decode(u.split(",", 1)[1]) for u in urls] == image_bytes(traj)
    assert all(u.startswith("data:image/png;base64,") for u in urls)
    assert all(p["type"] in ("text", "image_url") for p in parts)
    # the OpenAI API takes images only in user messages, and assistant messages as text
    assert all(isinstance(m["content"], str) for m in messages if m["role"] == "assistant")
    assert messages[-1]["content"] == traj.steps[-1].text  # the final turn, as written
    crop_result = messages[3]["content"]
    assert crop_result[0]["text"] == '<tool_response>\n{"result": "crop.png", "type": "code"}'
    assert crop_result[1]["type"] == "image_url" and crop_result[2]["text"] == "\n</tool_response>"
    line = json.loads(export_text([traj, traj], "openai").splitlines()[1])
    assert line == {"messages": messages}


@pytest.mark.parametrize("fmt", ["openai", "hf", "sharegpt"])
def test_a_json_file_is_one_array_and_a_jsonl_file_json_lines(traj: Trajectory, tmp_path: Path, fmt: str) -> None:
    as_array = json.loads(export([traj, traj], fmt, tmp_path / f"{fmt}.json").read_text(encoding="utf-8"))
    lines = export([traj, traj], fmt, tmp_path / f"{fmt}.jsonl").read_text(encoding="utf-8").splitlines()
    assert isinstance(as_array, list) and len(as_array) == 2 == len(lines)
    assert [json.loads(line) for line in lines] == as_array


def test_exports_are_the_context_of_the_last_turn_plus_its_text(traj: Trajectory) -> None:
    before = traj.context_at(traj.steps[-1].index)  # ends with the budget note, a system message
    after = to_hf(traj)
    assert after[:-1] == [m if isinstance(m["content"], str) else {**m, "content": [_abs(p) for p in m["content"]]}
                          for m in before]
    assert after[-1] == {"role": "assistant", "content": traj.steps[-1].text}


def _abs(part: dict[str, Any]) -> dict[str, Any]:
    return {**part, "image": str(Path(part["image"]).resolve())} if part.get("type") == "image" else part


def test_hf_export_paths_or_pil_images(traj: Trajectory) -> None:
    record = to_hf_record(traj)
    assert [Path(p).read_bytes() for p in record["images"]] == image_bytes(traj)
    assert all(Path(p).is_absolute() for p in record["images"])
    pil = to_hf(traj, images="pil")
    first = next(p["image"] for p in pil[1]["content"] if p["type"] == "image")
    assert first.size == (64, 48)
    with pytest.raises(UsageError, match="images='url'"):
        to_hf(traj, images="url")


def test_export_writes_atomically_and_rejects_unknown_formats(traj: Trajectory, tmp_path: Path) -> None:
    out = export([traj], "hf", tmp_path / "o" / "train.jsonl")
    assert [p.name for p in out.parent.iterdir()] == ["train.jsonl"]
    assert json.loads(out.read_text(encoding="utf-8"))["messages"][0]["role"] == "system"
    with pytest.raises(UsageError, match="unknown export format 'csv'"):
        export([traj], "csv", tmp_path / "o" / "x.csv")


def test_hosted_observations_as_plain_numbered_text(tmp_path: Path) -> None:
    """The report's figures show search results as plain numbered text, not the {"result", "type"} JSON."""
    content = ('<think>\nSearch.\n</think>\n\n<text_search>Pont Neuf architect</text_search>\n'
               "<observation>1. Pont Neuf - Wikipedia\n2. Émile Garnier, architect</observation>\n"
               "<think>\nFound.\n</think>\n\n<answer>Émile Garnier</answer>")
    back = import_reply({"choices": [{"message": {"content": content}}]}, tmp_path / "run.jsonl", question="Who?")
    assert [s.type for s in back.steps] == ["model", "tool", "model"]
    tool = back.steps[1]
    assert tool.call.name == "text_search" and tool.call.arguments == {"queries": ["Pont Neuf architect"]}
    assert tool.observation.text == "1. Pont Neuf - Wikipedia\n2. Émile Garnier, architect"
    assert back.end.answer == "Émile Garnier" and back.warnings == []


# --- LLaMA-Factory's own demo data (the shapes of its data/mllm_demo.json and glaive_toolcall_en_demo.json) ---


def test_import_a_multi_turn_chat_with_an_image_in_a_later_user_turn(tmp_path: Path) -> None:
    """mllm_demo.json: role/content messages, one image per user turn; the whole file used to abort."""
    make_png_pair = [tmp_path / "mllm_demo_data" / f"{k}.png" for k in (1, 2)]
    from tests.support.trajectory import make_png

    for k, p in enumerate(make_png_pair):
        make_png(p, (50 * k, 80, 80))
    record = {"messages": [{"content": "<image>Who are they?", "role": "user"},
                           {"content": "They're Kane and Gretzka from Bayern Munich.", "role": "assistant"},
                           {"content": "What are they doing?<image>", "role": "user"},
                           {"content": "They are celebrating on the soccer field.", "role": "assistant"}],
              "images": ["mllm_demo_data/1.png", "mllm_demo_data/2.png"]}
    (tmp_path / "mllm_demo.json").write_text(json.dumps([record]), encoding="utf-8")
    (path,) = import_file(tmp_path / "mllm_demo.json", tmp_path / "out")
    t = read(path)
    assert [s.type for s in t.steps] == ["model", "note", "model"]
    later = t.steps[1]
    assert later.reason == "user" and later.text == "What are they doing?"
    assert [im.path.read_bytes() for im in later.images] == [make_png_pair[1].read_bytes()]
    msgs = t.context_at(2)
    assert msgs[-1]["role"] == "user" and msgs[-1]["content"][0]["type"] == "image"
    again = to_sharegpt(t, root=tmp_path)
    assert llamafactory_problems(again) == [] and again["conversations"][2]["value"] == "<image>What are they doing?"


def test_import_a_tool_calling_chat_keeps_its_tools_and_system_prompt(tmp_path: Path) -> None:
    """glaive_toolcall_en_demo.json: a tools column (a JSON string of function specs), calls as bare JSON."""
    spec = {"name": "search_recipes", "description": "Search for recipes based on ingredients",
            "parameters": {"type": "object", "properties": {"ingredients": {"type": "array",
                                                                            "items": {"type": "string"}}},
                           "required": ["ingredients"]}}
    record = {"conversations": [
        {"from": "human", "value": "I have chicken and broccoli. What can I make?"},
        {"from": "function_call", "value": json.dumps({"name": "search_recipes",
                                                       "arguments": {"ingredients": ["chicken", "broccoli"]}})},
        {"from": "observation", "value": json.dumps({"recipes": [{"name": "Chicken Broccoli Stir Fry"}]})},
        {"from": "gpt", "value": "You could make a chicken and broccoli stir fry."}],
        "system": "You are a cooking assistant.", "tools": json.dumps([spec])}
    t = from_sharegpt(record, tmp_path / "glaive.jsonl")
    assert t.header.system_prompt == "You are a cooking assistant."
    (tool,) = t.header.tools
    assert tool["name"] == "search_recipes" and tool["parameters"] == spec["parameters"]
    assert t.steps[0].calls[0].arguments == {"ingredients": ["chicken", "broccoli"]}
    again = to_sharegpt(t)
    assert json.loads(again["tools"]) == [spec] and again["system"] == "You are a cooking assistant."
    assert llamafactory_problems(again) == []
