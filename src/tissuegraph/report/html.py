"""HTML building blocks: every piece of text escaped, one page with its own CSS and nothing loaded from outside."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

#: The browser refuses every outside resource, so the page looks the same offline and never calls out.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f6f7f9; color: #1d2430;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { background: #1d2f4d; color: #fff; padding: 22px 32px 16px; }
header h1 { margin: 0 0 4px; font-size: 24px; font-weight: 600; }
header p { margin: 0; opacity: 0.85; }
nav { margin-top: 12px; display: flex; flex-wrap: wrap; gap: 6px 16px; font-size: 14px; }
nav a { color: #cfe0ff; text-decoration: none; }
nav a:hover { text-decoration: underline; }
main { max-width: 1240px; margin: 0 auto; padding: 8px 24px 32px; }
section { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; margin: 18px 0; padding: 6px 22px 18px; }
h2 { font-size: 19px; margin: 14px 0 10px; padding-bottom: 6px; border-bottom: 1px solid #e6e9ef; }
h3 { font-size: 15px; margin: 12px 0 6px; }
.row { display: flex; flex-wrap: wrap; gap: 12px 28px; align-items: flex-start; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(290px, 1fr)); gap: 12px 18px; }
table { border-collapse: collapse; font-size: 13.5px; margin: 4px 0 8px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e6e9ef; text-align: left; vertical-align: top; }
th { background: #f0f2f6; font-weight: 600; }
table.num td:not(:first-child), table.num th:not(:first-child) { text-align: right; }
td { font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.total td { font-weight: 600; border-top: 2px solid #c9ced8; }
figure { margin: 10px 0; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption, .note { color: #596273; font-size: 13px; margin: 4px 0; }
footer { color: #7a8394; font-size: 12px; text-align: center; padding: 0 0 24px; }
"""


def esc(value: object) -> str:
    """Text made safe for HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def table(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: bool = False, total: bool = False
) -> str:
    """A table of escaped cells; ``numeric`` right-aligns every column but the first, ``total`` marks the last row."""
    body = [f"<tr>{''.join(f'<td>{esc(cell)}</td>' for cell in row)}</tr>" for row in rows]
    if total and body:
        body[-1] = body[-1].replace("<tr>", '<tr class="total">', 1)
    head = "".join(f"<th>{esc(name)}</th>" for name in header)
    css = ' class="num"' if numeric else ""
    return f"<table{css}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure(uri: str, alt: str, caption: str | None = None) -> str:
    """An inline image (``uri`` is a data URI) with an optional caption."""
    text = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{esc(uri)}" alt="{esc(alt)}">{text}</figure>'


def note(text: str) -> str:
    """A grey explanatory line under a table or figure."""
    return f'<p class="note">{esc(text)}</p>'


def section(anchor: str, heading: str, body: str) -> str:
    """A section the header's links can jump to (``#anchor``)."""
    return f'<section id="{esc(anchor)}"><h2>{esc(heading)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]], footer: str) -> str:
    """The whole document: header with a link to every section, the sections (anchor, heading, body), footer."""
    links = "".join(f'<a href="#{esc(anchor)}">{esc(heading)}</a>' for anchor, heading, _ in sections)
    content = "".join(section(anchor, heading, body) for anchor, heading, body in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CONTENT_SECURITY_POLICY)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p><nav>{links}</nav></header>"
        f"<main>{content}</main><footer>{esc(footer)}</footer></body></html>\n"
    )
