"""tools/htmltext.py: a web page to its main text, title and numbered links."""

from __future__ import annotations

from r1v4_nb.tools.htmltext import extract

PAGE = """<!doctype html><html><head><title>  The Brass
  Astrolabe </title><style>p{color:red}</style><script>var secret = 1;</script></head>
<body>
<nav><a href="/home">Home</a> <a href="/about">About</a></nav>
<div class="cookie-banner">We use cookies. <button>Accept</button></div>
<main>
  <h1>The Brass Astrolabe</h1>
  <p>Made in <a href="/wiki/harbour_city#history">Harbour City</a> in 1623.<br>Now in a museum.</p>
  <h2>Makers</h2>
  <ul><li>Ana Sol</li><li>See <a href="https://other.example/ana">her page</a> and
      <a href="/wiki/harbour_city">the city</a> again.</li></ul>
  <table><tr><th>Year</th><td>1623</td></tr></table>
  <p>Bad links: <a href="javascript:alert(1)">script</a>, <a href="mailto:a@b.c">mail</a>, <a href="">empty</a>.</p>
  <div class="share-buttons">Share on everything</div>
  <aside>Related: other astrolabes</aside>
</main>
<footer>Copyright</footer>
</body></html>"""


def test_main_text_headings_lists_and_table_cells():
    doc = extract(PAGE, "https://atlas.example/wiki/astrolabe")
    assert doc.title == "The Brass Astrolabe"
    lines = doc.text.splitlines()
    assert lines[0] == "# The Brass Astrolabe"
    assert "## Makers" in lines and "- Ana Sol" in lines
    assert "Now in a museum." in lines  # <br> is a line break
    assert any(line.startswith("| Year") and "1623" in line for line in lines)


def test_boilerplate_scripts_and_styles_are_dropped():
    doc = extract(PAGE, "https://atlas.example/wiki/astrolabe")
    for gone in ("Home", "cookies", "Accept", "Share on", "Related", "Copyright", "secret", "color:red"):
        assert gone not in doc.text, gone


def test_links_become_numbered_references_with_absolute_urls():
    doc = extract(PAGE, "https://atlas.example/wiki/astrolabe")
    assert doc.links == [
        {"text": "Harbour City", "url": "https://atlas.example/wiki/harbour_city"},
        {"text": "her page", "url": "https://other.example/ana"},
    ]
    assert "Made in Harbour City [1] in 1623." in doc.text
    assert "her page [2]" in doc.text and "the city [1]" in doc.text  # one number per URL (fragment dropped)
    assert "script, mail, empty." in doc.text  # non-web links keep only their text


def test_the_title_falls_back_to_h1_and_the_canonical_link_is_the_base():
    html = ('<html><head><link rel="canonical" href="https://canon.example/p/"></head>'
            '<body><h1>Only a heading</h1><p><a href="next">next page</a></p></body></html>')
    doc = extract(html)
    assert doc.title == "Only a heading" and doc.url == "https://canon.example/p/"
    assert doc.links == [{"text": "next page", "url": "https://canon.example/p/next"}]


def test_a_link_to_the_page_itself_is_plain_text():
    doc = extract('<p>See <a href="https://x.example/a#top">this page</a>.</p>', "https://x.example/a")
    assert doc.links == [] and doc.text == "See this page."


def test_markup_the_strict_parser_rejects_still_gives_its_text():
    doc = extract("<![><p>still here</p><![if x]><p>and here</p>")
    assert "still here" in doc.text and "and here" in doc.text
