"""HTML to clean main text: title, headings, paragraphs, list items; links kept as numbered references.

Pages from the web carry menus, cookie banners and footers around the part
worth reading; the model's context is too small for them. We keep the main
content (`<main>`, `<article>` or the body without boilerplate), write headings
as `#` lines and list items as `- ` lines, and replace each link by its text
and a reference number `[n]` whose URL is listed separately.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urldefrag, urljoin

_DROP_TAGS = ["script", "style", "noscript", "template", "svg", "canvas", "iframe", "form", "button", "input",
              "select", "textarea", "nav", "header", "footer", "aside", "dialog", "object", "embed"]
_DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "dialog"}
_BOILERPLATE = re.compile(
    r"(^|[-_ ])(nav|navbar|menu|footer|sidebar|cookie|cookies|consent|banner|breadcrumbs?|advert|ads|ad|promo|"
    r"share|social|subscribe|newsletter|related|comments?|popup|modal|skip)([-_ ]|$)", re.IGNORECASE)
_BLOCKS = ["p", "div", "section", "article", "main", "table", "tr", "ul", "ol", "pre", "blockquote", "dl", "dt",
           "dd", "figure", "figcaption", "address", "details", "summary", "hr"]


@dataclass
class Document:
    """A page as text: `text` refers to `links[n-1]` as `[n]`."""

    url: str
    title: str
    text: str
    links: list[dict[str, str]] = field(default_factory=list)


def _is_boilerplate(tag) -> bool:  # noqa: ANN001 (a bs4 Tag)
    if tag.attrs is None:
        return False
    if (tag.get("role") or "").lower() in _DROP_ROLES or tag.get("aria-hidden") == "true":
        return True
    names = " ".join(tag.get("class") or []) + " " + (tag.get("id") or "")
    return bool(names.strip()) and bool(_BOILERPLATE.search(names)) and tag.name not in ("body", "html", "main")


# `<!` that opens neither a comment, a doctype nor CDATA: markup declarations Python's HTML parser gives up on.
_BAD_DECLARATION = re.compile(r"<!(?!--|\[CDATA\[|doctype)", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def _soup(html: str):  # noqa: ANN202 (a bs4 BeautifulSoup)
    """Parse leniently: a page the strict parser rejects (`<![><p>...`) is parsed again with its odd
    declarations escaped, then by any more forgiving parser installed; None when every one refuses."""
    from bs4 import BeautifulSoup
    from bs4.exceptions import ParserRejectedMarkup

    attempts = [(html, "html.parser"), (_BAD_DECLARATION.sub("&lt;!", html), "html.parser"),
                (html, "lxml"), (html, "html5lib")]
    for markup, parser in attempts:
        try:
            return BeautifulSoup(markup, parser)
        except ParserRejectedMarkup:
            continue
        except Exception as exc:  # bs4.FeatureNotFound: that parser is not installed
            if type(exc).__name__ != "FeatureNotFound":
                raise
    return None


def extract(html: str, url: str = "") -> Document:
    """The main text of an HTML page, its title and its links (absolute URLs)."""
    soup = _soup(html)
    if soup is None:  # no parser accepted it: keep the text between the tags
        from html import unescape

        lines = [" ".join(unescape(line).split()) for line in _TAG.sub("\n", html).splitlines()]
        return Document(url, "", "\n".join(line for line in lines if line))
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text(" ").split()) if title_tag else ""
    canonical = soup.find("link", rel="canonical")
    base = url
    if canonical is not None and canonical.get("href") and not url:
        base = canonical["href"]
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    for tag in [t for t in soup.find_all(True) if _is_boilerplate(t)]:
        if not tag.decomposed:
            tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.find(attrs={"role": "main"}) or soup.body or soup
    h1 = root.find("h1")
    if not title and h1 is not None:
        title = " ".join(h1.get_text(" ").split())

    links: list[dict[str, str]] = []
    numbers: dict[str, int] = {}
    for a in root.find_all("a"):
        text = " ".join(a.get_text(" ").split())
        href = (a.get("href") or "").strip()
        target = urldefrag(urljoin(base, href))[0] if href else ""
        if not target or target.split(":", 1)[0].lower() not in ("http", "https", "file") or target == base:
            a.replace_with(text)
            continue
        if target not in numbers:
            links.append({"text": text or target, "url": target})
            numbers[target] = len(links)
        a.replace_with(f"{text} [{numbers[target]}]" if text else f"[{numbers[target]}]")
    for br in root.find_all("br"):
        br.replace_with("\n")
    for level in range(1, 7):
        for h in root.find_all(f"h{level}"):
            h.insert_before("\n\n" + "#" * level + " ")
            h.insert_after("\n\n")
    for li in root.find_all("li"):
        li.insert_before("\n- ")
        li.insert_after("\n")
    for cell in root.find_all(["td", "th"]):
        cell.insert_before(" | ")
    for block in root.find_all(_BLOCKS):
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    lines = [" ".join(line.split()) for line in root.get_text("").splitlines()]
    text = "\n".join(line for line in lines if line and line not in ("-", "|"))
    return Document(url or base, title, text, links)
