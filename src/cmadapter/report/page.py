"""The report page: one HTML file with its figures embedded as data URIs (the PNGs also lie beside it), so
it opens offline, from anywhere, with no server and nothing fetched."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
p.note { color: #555; font-size: 0.9em; max-width: 60em; }
"""


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)  # plain text, escaped when written
    table: tuple[list[str], list[list[Any]]] | None = None  # header, rows
    image: Path | None = None
    alt: str = ""


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:,.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
        if isinstance(value, int):
            return f"{value:,}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_page(path: Path, title: str, sections: Sequence[Section]) -> Path:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.table is not None:
            parts.append(table_html(*section.table))
        if section.image is not None:
            parts.append(
                f'<p><img src="{data_uri(section.image)}" alt="{html.escape(section.alt or section.title)}" '
                f'data-file="{html.escape(section.image.name)}"></p>'
            )
        parts.extend(f'<p class="note">{html.escape(p)}</p>' for p in section.paragraphs)
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
