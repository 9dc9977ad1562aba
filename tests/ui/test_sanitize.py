"""ui/sanitize.py: the HTML security boundary. Hostile text stays text; only plain http(s) links survive."""

from __future__ import annotations

import pytest
from bs4 import BeautifulSoup

from r1v4_nb.ui.sanitize import esc, link, safe_url

HOSTILE = [
    '<script>alert(1)</script>',
    '<img src=x onerror="alert(1)">',
    '"><svg onload=alert(1)>',
    "<style>body{display:none}</style>",
    "' onmouseover='alert(1)",
    "<a href='javascript:alert(1)'>x</a>",
    "&lt;already escaped&gt; & <b>bold</b>",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_text_parses_back_to_the_same_text_and_no_elements(text):
    html = f"<div>{esc(text)}</div>"
    soup = BeautifulSoup(html, "html.parser")
    assert soup.div.get_text() == text
    assert soup.div.find() is None  # nothing inside but text


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_text_cannot_leave_an_attribute(text):
    soup = BeautifulSoup(f'<span title="{esc(text)}">x</span>', "html.parser")
    span = soup.span
    assert span["title"] == text and list(span.attrs) == ["title"]


def test_esc_of_none_and_of_non_strings():
    assert esc(None) == "" and esc(42) == "42" and esc(["<a>"]) == "[&#x27;&lt;a&gt;&#x27;]"


@pytest.mark.parametrize("url", [
    "https://example.org/a?b=1#c", "http://example.org", "HTTPS://EXAMPLE.ORG/x", "  https://example.org/  ",
])
def test_plain_http_urls_are_kept(url):
    assert safe_url(url) == url.strip()


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox", "file:///etc/passwd", "//example.org/x", "/relative", "example.org",
    "https://", "https://exa mple.org", "https://example.org/\nx", "java\tscript:alert(1)",
    "http://[::1", "", None, 3, ["https://example.org"],
])
def test_anything_else_is_refused(url):
    assert safe_url(url) is None


def test_a_link_is_inert_and_opens_elsewhere():
    soup = BeautifulSoup(link("https://example.org/?q=\"><script>", "<b>title</b>"), "html.parser")
    a = soup.a
    assert a["href"] == 'https://example.org/?q="><script>' and a.get_text() == "<b>title</b>"
    assert a["target"] == "_blank" and set(a["rel"]) == {"noopener", "noreferrer", "nofollow"}
    assert soup.find("script") is None and soup.find("b") is None


def test_a_refused_url_becomes_marked_plain_text():
    soup = BeautifulSoup(link("javascript:alert(1)"), "html.parser")
    assert soup.find("a") is None
    assert soup.span["class"] == ["r1v4-badurl"] and soup.span.get_text() == "javascript:alert(1)"
    assert BeautifulSoup(link("https://example.org/p"), "html.parser").a.get_text() == "https://example.org/p"
