"""ui/render.py's context view: the exact messages a model saw, with the dialect's own tags marked."""

from __future__ import annotations

from bs4 import BeautifulSoup

from r1v4_nb.dialects import get_dialect
from r1v4_nb.ui.render import render_context

TEXT = "<think>look</think><tool_response>r</tool_response><observation>o</observation><answer>1</answer>"


def _marked(tags) -> list[str]:
    html = render_context([{"role": "assistant", "content": TEXT}], tags=tags)
    return [t.text for t in BeautifulSoup(html, "html.parser").select(".r1v4-tag")]


def test_only_the_dialects_tags_are_marked():
    assert _marked(get_dialect("r1v4").tag_names) == ["<think>", "</think>", "<observation>", "</observation>",
                                                      "<answer>", "</answer>"]
    assert "<tool_response>" in _marked(get_dialect("qwen").tag_names)
    assert "<observation>" not in _marked(get_dialect("qwen").tag_names)
    assert _marked(()) == []


def test_hostile_text_in_a_context_stays_text(tmp_path):
    html = render_context([{"role": "user", "content": [
        {"type": "text", "text": "<script>alert(1)</script><think>x</think>"},
        {"type": "image", "image": str(tmp_path / "gone.png")}]}], tags=("think",))
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("script") is None and "<script>alert(1)</script>" in soup.get_text()
    assert "(image gone.png missing)" in soup.get_text()
