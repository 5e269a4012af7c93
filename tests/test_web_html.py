"""Rendering HTML into a Page: real Python documentation pages, and hostile markup."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from citeenv.backends import BrowserError
from citeenv.web.fetch import Fetched
from citeenv.web.html import TRUNCATED_MARK, RenderConfig, render, render_html, render_text
from web_support import python_docs

DOCS_URL = "https://docs.python.org/3/"


def real_page(relpath: str, config: RenderConfig | None = None):
    html = (python_docs() / relpath).read_text(encoding="utf-8")
    return render_html(html, DOCS_URL + relpath, config)


def assert_links_consistent(page):
    """Every link's anchor sits at its offsets, links run in text order, urls are unique http(s)."""
    assert page.links, "a documentation page has links"
    for link in page.links:
        assert 0 <= link.start < link.end <= len(page.text)
        assert page.text[link.start:link.end] == link.text
        assert link.text.strip() == link.text and link.text
        assert urlsplit(link.url).scheme in ("http", "https")
    starts = [lk.start for lk in page.links]
    assert starts == sorted(starts)
    assert len({lk.url for lk in page.links}) == len(page.links)


# -- real documentation pages ---------------------------------------------------------------

def test_json_page_title_text_and_links():
    page = real_page("library/json.html")
    assert page.title.startswith("json — JSON encoder and decoder — Python 3.11")
    assert page.url == DOCS_URL + "library/json.html"
    assert page.text.startswith("json — JSON encoder and decoder")
    assert "JSON (JavaScript Object Notation), specified by RFC 7159" in page.text
    assert "Be cautious when parsing JSON data from untrusted sources." in page.text
    assert_links_consistent(page)
    by_text = {lk.text: lk.url for lk in page.links}
    # Relative hrefs ("marshal.html#module-marshal", "../glossary.html#...") resolve against the page url.
    assert by_text["marshal"] == "https://docs.python.org/3/library/marshal.html#module-marshal"
    assert by_text["file-like object"] == "https://docs.python.org/3/glossary.html#term-file-like-object"
    assert by_text["RFC 7159"] == "https://datatracker.ietf.org/doc/html/rfc7159.html"


def test_link_offsets_point_at_the_anchor_text_in_context():
    page = real_page("library/json.html")
    rfc = next(lk for lk in page.links if lk.text == "RFC 7159")
    assert page.text[rfc.start - len("specified by "):rfc.end] == "specified by RFC 7159"


def test_sidebar_navigation_and_head_are_dropped():
    page = real_page("library/json.html")
    for chrome in ("Table of Contents", "Previous topic", "Next topic", "This Page", "Report a Bug", "Navigation",
                   "pydoctheme.css", "Quick search"):
        assert chrome not in page.text
    assert not any(lk.url.startswith("file:") for lk in page.links)  # the page has a file:// link


def test_pre_blocks_keep_their_lines_and_indentation():
    page = real_page("library/json.html")
    assert ">>> import json\n>>> json.dumps(['foo', {'bar': ('baz', None, 1.0, 2)}])\n" in page.text
    assert '{\n    "4": 5,\n    "6": 7\n}' in page.text


def test_headings_and_paragraphs_are_separate_blocks():
    page = real_page("library/json.html")
    assert "\n\nBasic Usage¶\n\n" in page.text
    assert "\n\n\n" not in page.text


def test_footnotes_in_aside_are_kept():
    page = real_page("library/json.html")
    footnotes = page.text[page.text.index("\nFootnotes\n"):]
    assert "RFC 7159" in footnotes  # the footnote body, not just its heading


def test_in_page_anchor_links_are_not_listed():
    page = real_page("library/json.html")
    assert not any(lk.url.startswith(DOCS_URL + "library/json.html") for lk in page.links)


@pytest.mark.parametrize("relpath", ["library/csv.html", "library/glob.html", "library/fnmatch.html", "tutorial/classes.html",
                                     "reference/datamodel.html", "howto/regex.html", "index.html", "library/index.html"])
def test_more_real_pages_render_consistently(relpath):
    page = real_page(relpath)
    assert "3.11" in page.title
    assert len(page.text) > 500
    assert_links_consistent(page)
    assert "\x00" not in page.text and "<div" not in page.text and "</a>" not in page.text


def test_a_long_page_is_cut_with_a_marker_and_no_link_past_the_cut():
    config = RenderConfig(max_chars=20_000)
    page = real_page("library/os.html", config)
    assert page.text.endswith("\n\n" + TRUNCATED_MARK)
    body = page.text[: -len(TRUNCATED_MARK) - 2]
    assert len(body) <= 20_000
    assert all(lk.end <= len(body) for lk in page.links)
    assert_links_consistent(page)


def test_link_count_is_bounded():
    page = real_page("library/json.html", RenderConfig(max_links=7))
    assert len(page.links) == 7


def test_base_href_is_honoured():
    html = '<html><head><base href="https://example.org/docs/v2/"><title>b</title></head><body><p><a href="page.html">rel</a> <a href="/abs">abs</a></p></body></html>'
    page = render_html(html, "https://other.example/x/y.html")
    assert [lk.url for lk in page.links] == ["https://example.org/docs/v2/page.html", "https://example.org/abs"]


# -- hostile markup ---------------------------------------------------------------------------

def test_script_style_and_other_code_never_reach_the_text():
    html = (python_docs() / "library/json.html").read_text(encoding="utf-8")
    evil = ("<script>var STOLEN = 'SCRIPT_SECRET';</script><style>.x{content:'STYLE_SECRET'}</style>"
            "<noscript>NOSCRIPT_SECRET</noscript><template><p>TEMPLATE_SECRET</p></template>"
            "<iframe srcdoc='IFRAME_SECRET'>IFRAME_SECRET</iframe><svg><text>SVG_SECRET</text><title>SVG_TITLE</title></svg>"
            "<script type=\"text/template\"><p>TEMPLATE_IN_SCRIPT</p></script><object>OBJECT_SECRET</object>"
            "<SCRIPT>UPPER_SECRET</SCRIPT><script>document.write('</p>WRITE_SECRET')</script>")
    html = html.replace("<body>", "<body>" + evil, 1).replace("</body>", evil + "</body>", 1)
    page = render_html(html, DOCS_URL + "library/json.html")
    for secret in ("SCRIPT_SECRET", "STYLE_SECRET", "NOSCRIPT_SECRET", "TEMPLATE_SECRET", "IFRAME_SECRET", "SVG_SECRET",
                   "SVG_TITLE", "TEMPLATE_IN_SCRIPT", "OBJECT_SECRET", "UPPER_SECRET", "STOLEN", "WRITE_SECRET"):
        assert secret not in page.text
    assert "JSON (JavaScript Object Notation)" in page.text
    assert page.title.startswith("json — JSON encoder and decoder")


def test_hidden_text_is_dropped():
    html = ("<p>visible</p><p hidden>HIDDEN_ATTR</p><div style='display: none'>HIDDEN_STYLE</div>"
            "<span style='visibility:hidden'>HIDDEN_VIS</span><div aria-hidden='true'>ARIA</div>"
            "<nav>NAV_MENU</nav><div role='navigation'>ROLE_NAV</div><footer>FOOTER</footer>")
    page = render_html(html, "https://example.org/")
    assert page.text == "visible"


def test_only_http_links_are_kept_and_repeats_are_merged():
    html = ("<p><a href='javascript:alert(1)'>js</a> <a href=' JaVaScRiPt:alert(1)'>js2</a> "
            "<a href='java\nscript:alert(1)'>js3</a> <a href='data:text/html,hi'>data</a> <a href='mailto:a@b.c'>mail</a> "
            "<a href='file:///etc/passwd'>file</a> <a href='ftp://x/'>ftp</a> <a href='/ok'>ok</a> <a href='/ok'>again</a> "
            "<a href='#top'>top</a> <a>no href</a> <a href='/empty'></a> <a href='https://example.org/other'>other</a></p>")
    page = render_html(html, "https://example.org/page")
    assert [(lk.text, lk.url) for lk in page.links] == [("ok", "https://example.org/ok"),
                                                         ("other", "https://example.org/other")]
    assert page.text.startswith("js js2 js3 data mail file ftp ok again top no href")


def test_control_and_bidi_characters_are_removed():
    html = "<title>t\x1b[31m</title><p>a\x00b\x07c \u202eevil\u202c d\u200be \x1b]0;x\x07</p>"
    page = render_html(html, "https://example.org/")
    assert page.text == "abc evil de ]0;x"
    assert page.title == "t[31m"


def test_entities_are_decoded_once_and_markup_in_text_stays_text():
    page = render_html("<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp;amp; caf&eacute; &#x41;</p>", "https://e.org/")
    assert page.text == "<script>alert(1)</script> &amp; café A"


def test_deeply_nested_and_broken_markup_does_not_crash():
    depth = 1_500  # past Python's recursion limit
    html = "<div>" * depth + "<p>deep text <a href='/d'>deep link</a>" + "</div>" * depth + "<p>after"
    page = render_html(html, "https://example.org/")
    assert page.text == "deep text deep link\n\nafter"
    assert page.links[0].text == "deep link"
    # past libxml2's nesting limit (2048) the page is cut there, and says so
    html = "<p>before" + "<div>" * 5_000 + "<p>too deep" + "</div>" * 5_000 + "<p>after"
    assert render_html(html, "https://example.org/").text == "before\n\n" + TRUNCATED_MARK
    broken = "<p>one<p>two<li>three<a href='/x'>un<b>closed <table><tr><td>c1<td>c2</table><</>>>&&;"
    page = render_html(broken, "https://example.org/")
    assert "one\n\ntwo" in page.text and "c1 | c2" in page.text


def test_lists_tables_and_line_breaks():
    html = ("<ul><li>apple</li><li>pear</li></ul><ol start='3'><li>third</li><li>fourth</li></ol>"
            "<table><tr><th>name</th><th>value</th></tr><tr><td>a</td><td>1</td></tr></table><p>line one<br>line two</p>")
    page = render_html(html, "https://example.org/")
    assert page.text == "- apple\n- pear\n\n3. third\n4. fourth\n\nname | value\na | 1\n\nline one\nline two"


def test_nested_links_do_not_overlap():
    page = render_html("<p><a href='/outer'>outer <a href='/inner'>inner</a> tail</a> <a href='/next'>next</a></p>",
                       "https://example.org/")
    assert page.text == "outer inner tail next"
    spans = [(lk.start, lk.end) for lk in page.links]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    # as in browsers, an <a> inside an open <a> closes the outer one first
    assert [lk.url for lk in page.links] == ["https://example.org/outer", "https://example.org/inner",
                                             "https://example.org/next"]


def test_image_links_use_their_alt_text():
    page = render_html("<p><a href='/home'><img src='logo.png' alt='Home page'></a> and <img alt='ignored'></p>",
                       "https://example.org/")
    assert page.links[0].text == "Home page"
    assert "ignored" not in page.text


def test_title_falls_back_to_the_first_heading_then_the_url():
    assert render_html("<h1>Heading title</h1><p>x</p>", "https://e.org/a/b.html").title == "Heading title"
    assert render_html("<p>x</p>", "https://e.org/a/b.html").title == "b.html"
    assert len(render_html("<title>" + "t" * 5000 + "</title>", "https://e.org/").title) <= 200


def test_empty_document_renders_empty():
    page = render_html("", "https://example.org/")
    assert page.text == "" and page.links == []


# -- plain text and dispatch ----------------------------------------------------------------

def test_plain_text_is_shown_as_it_is():
    text = "Title line\r\n\r\n  indented <b>not markup</b>\n\tx\x00y\n"
    page = render_text(text, "https://example.org/notes.txt")
    assert page.text == "Title line\n\n  indented <b>not markup</b>\n\txy"
    assert page.title == "Title line" and page.links == []


def test_render_dispatches_on_content_type():
    html = "<title>T</title><p>a <b>b</b></p>"
    as_html = render(Fetched("https://e.org/", 200, "text/html", "utf-8", html))
    as_text = render(Fetched("https://e.org/", 200, "text/plain", "utf-8", html))
    assert as_html.text == "a b" and as_html.title == "T"
    assert as_text.text == html


def test_junk_markup_gives_a_page_or_a_browser_error():
    # libxml2 accepts everything we have found; the renderer's contract is BrowserError or a Page.
    for junk in ["<![CDATA[", "<!", "<?xml", "</", "<a href='", "\x00" * 100, "<" * 10000, "&#99999999999;"]:
        try:
            page = render_html(junk, "https://example.org/")
        except BrowserError:
            continue
        assert isinstance(page.text, str)
