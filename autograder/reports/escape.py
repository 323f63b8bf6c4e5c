"""Making what a submission wrote inert in every report format.

Anything in a grading record can come from a student: names from a class zip, exception messages,
tracebacks, cell errors, integrity flags. In Markdown it enters only through `inline` (every
Markdown and HTML character backslash-escaped, one line), `code_span` or `fenced` (delimiters longer
than any backtick run in it), so no renderer turns it into a tag, a link or an image, whether or not
it escapes raw HTML; `markdown_to_html` escapes raw HTML and drops harmful URLs on top of that. CSV
cells that a spreadsheet would run as formulas get a leading quote; plot labels are never mathtext.
"""

from __future__ import annotations

import re

import mistune

# Control characters (terminal escapes, NUL) and bidi overrides, which make a name read as another
# one; line breaks are left to each format.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Every character that opens Markdown/GFM/math syntax mid-line, or HTML and entities; an underscore
# between two letters or digits opens nothing (hw1_manual_mlp stays readable).
_MARKDOWN = re.compile(r"[\\`*~\[\]<>&|${}]|(?<![^\W_])_|_(?![^\W_])")
# What opens a block at the start of a line: a list, a heading, a setext underline.
_LINE_START = re.compile(r"^(\d*)([-+=#.)])")
_BACKTICKS = re.compile("`+")
_FORMULA = re.compile("^(?:[\t\r\n]|\\s*[=+\\-@\uff1d\uff0b\uff0d\uff20])")
_NUMBER = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")
_RENDER = mistune.create_markdown(escape=True, plugins=["table"])


def visible(text: object) -> str:
    """`text` with invisible control characters shown as `\\uXXXX`."""
    return _INVISIBLE.sub(lambda match: f"\\u{ord(match.group()):04x}", str(text))


def _one_line(text: object) -> str:
    return " ".join(str(text).splitlines()).strip()


def inline(text: object) -> str:
    """`text` as literal Markdown text on one line: a heading, a list item, a table cell, a quote."""
    escaped = _MARKDOWN.sub(lambda match: "\\" + match.group(), visible(_one_line(text)))
    return _LINE_START.sub(r"\1\\\2", escaped)


def _fence_for(text: str, shortest: int) -> str:
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    return "`" * max(shortest, longest + 1)


def code_span(text: object) -> str:
    """`text` as one Markdown code span, padded so that backticks at its ends stay its own. Not for
    table cells: GFM splits a row at every `|`, even inside a code span."""
    line = visible(_one_line(text))
    fence = _fence_for(line, 1)
    pad = " " if line.startswith("`") or line.endswith("`") else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def fenced(text: object, indent: str = "") -> list[str]:
    """Lines of a fenced code block showing `text` verbatim; `indent` keeps it inside a list item."""
    lines = [visible(line) for line in str(text).splitlines()]
    fence = _fence_for("\n".join(lines), 3)
    return [indent + fence, *(indent + line for line in lines), indent + fence]


def markdown_to_html(text: str) -> str:
    """Our Markdown as HTML. A second wall: raw HTML is escaped, and a javascript:, vbscript: or
    non-image data: link becomes #harmful-link."""
    return _RENDER(text)


def csv_cell(value: object) -> object:
    """A text cell a spreadsheet would run as a formula gets a leading ' (numbers stay numbers)."""
    if isinstance(value, str) and _FORMULA.match(value) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def plot_label(text: object) -> str:
    """A label for matplotlib, whitespace squeezed; callers also pass parse_math=False so `$` stays literal."""
    return visible(" ".join(str(text).split()))
