"""A mart's preview shows OLTP text (``c_comment``) as literal text: no value can inject Markdown or HTML into the UI.

Rendered with markdown-it (CommonMark plus GFM tables, as the UI's renderer reads them; it comes with rich).
"""

from itertools import pairwise

from markdown_it import MarkdownIt
from markdown_it.token import Token

from platform_assets.metadata import markdown_preview

HOSTILE = [
    "[x](http://evil)",
    "![i](http://evil/p.png)",
    "# H",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "`code` and ``more``",
    "```\nfence\n```",
    "line one\nline two\r\nline three",
    "**bold** _em_ ~~gone~~",
    "a | b \\| c \\",
    "&lt;img&gt; &#x3C;",
    "<http://evil> www.evil.com",
    "- item\n+ item\n1. item",
    "> quote",
    "[ref]: http://evil",
]
MARKUP = {"link_open", "image", "heading_open", "html_inline", "html_block", "code_inline", "fence", "code_block",
          "em_open", "strong_open", "s_open", "bullet_list_open", "ordered_list_open", "blockquote_open", "softbreak",
          "hardbreak"}  # fmt: skip


def _tokens(markdown: str) -> list[Token]:
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    flat: list[Token] = []
    for token in md.parse(markdown):
        flat += [token, *(token.children or [])]
    return flat


def _cells(tokens: list[Token]) -> list[str]:
    """The rendered text of every header and body cell, in order."""
    return [
        "".join(child.content for child in inline.children or [])
        for opened, inline in pairwise(tokens)
        if opened.type in ("th_open", "td_open") and inline.type == "inline"
    ]


def test_hostile_values_render_as_their_literal_text():
    header = ["c_custkey", "c_comment"]
    rows = [(i, value) for i, value in enumerate(HOSTILE)]
    tokens = _tokens(markdown_preview(header, rows, limit=len(rows)))
    assert not MARKUP & {t.type for t in tokens}, sorted(MARKUP & {t.type for t in tokens})
    assert {t.type for t in tokens if t.type.endswith("_open")} <= {"table_open", "thead_open", "tbody_open",
                                                                      "tr_open", "th_open", "td_open"}  # fmt: skip
    one_line = [" ".join(v.splitlines()) for v in HOSTILE]
    assert _cells(tokens) == header + [c for i, v in enumerate(one_line) for c in (str(i), v)]


def test_plain_values_and_the_row_limit_are_kept():
    rows = [(i, f"customer {i}", "1995-03-15", 1234.5) for i in range(12)]
    cells = _cells(_tokens(markdown_preview(["id", "name", "day", "revenue"], rows)))
    assert cells == ["id", "name", "day", "revenue"] + [str(v) for row in rows[:10] for v in row]
