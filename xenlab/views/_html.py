"""Small HTML helpers shared by the views (no widget imports here)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

STYLE = """<style>
.xl-box{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;line-height:1.35}
.xl-box table{border-collapse:collapse;margin:2px 0 6px 0}
.xl-box td,.xl-box th{border:1px solid #ccc;padding:1px 6px;text-align:left;vertical-align:top}
.xl-box th{background:#eef}
.xl-box .xl-new{background:#fff3a0}
.xl-box .xl-gone{background:#f8d0d0;text-decoration:line-through}
.xl-box .xl-muted{color:#888}
.xl-box .xl-err{color:#b00;font-weight:bold}
.xl-box h4{margin:4px 0 2px 0;font-size:13px}
.xl-cols{display:flex;gap:16px;align-items:flex-start}
</style>"""


def esc(value: object) -> str:
    """HTML-escape the str() of *value*."""
    return html.escape(str(value))


def _cell(value: object) -> str:
    """A table cell: escaped, leading spaces kept (tree indentation)."""
    text = str(value)
    stripped = text.lstrip(" ")
    return "&nbsp;" * (len(text) - len(stripped)) + esc(stripped)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], marks: Iterable[str] = ()) -> str:
    """An HTML table; *marks* gives a CSS class per row ('' for none)."""
    marks = list(marks)
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>"]
    for i, row in enumerate(rows):
        cls = marks[i] if i < len(marks) and marks[i] else ""
        attr = f' class="{cls}"' if cls else ""
        out.append(f"<tr{attr}>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def text_table(headers: Sequence[str], rows: Iterable[Sequence[object]], marks: Iterable[str] = ()) -> str:
    """The same table as aligned text; a changed row is flagged '*' in the first column."""
    rows = [[str(c) for c in r] for r in rows]
    marks = list(marks)
    flagged = [("*" if i < len(marks) and marks[i] else " ") for i in range(len(rows))]
    widths = [max([len(h)] + [len(r[j]) for r in rows]) for j, h in enumerate(headers)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for flag, r in zip(flagged, rows, strict=True):
        lines.append(f"{flag} " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def box(inner: str, style: bool = True) -> str:
    """Wrap view HTML in the styled container (with the stylesheet unless the page has it already)."""
    return f'{STYLE if style else ""}<div class="xl-box">{inner}</div>'
