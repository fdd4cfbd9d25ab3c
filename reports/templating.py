"""The jinja2 environments for report templates: HTML autoescaped, Markdown escaped by `markdown_text`.

Every value a template prints may come from the user's files (file, method, identity names, reasons
quoting them), so neither report can be turned into live markup, and no control character reaches
either: report.html through `html_text` and Jinja2's autoescape, report.md through `markdown_text`,
each applied to every printed value (jinja2's `finalize`).
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from redteam.core.text import printable

#: Characters that start Markdown syntax (emphasis, code, links, tables, escapes); `_` only where it could
#: open or close emphasis (not inside a word such as rank1_other).
_MARKDOWN_ACTIVE = re.compile(r"([\\`*\[\]|~])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def markdown_text(value: Any) -> Any:
    """A value shown as written by a CommonMark/GFM renderer: control and other non-printable characters
    become visible escapes (`redteam.core.text.printable`: a line break is shown as ``\\n``, so a value
    never ends a table row or a list item), HTML-significant characters become entities, Markdown
    punctuation is backslash-escaped. Non-strings are returned unchanged."""
    if not isinstance(value, str):
        return value
    flat = " ".join(printable(value).splitlines())
    return _MARKDOWN_ACTIVE.sub(lambda m: "\\" + m.group(0), html.escape(flat, quote=False))


def html_text(value: Any) -> Any:
    """A value for report.html: control and other non-printable characters shown as escapes (an ESC or a
    NUL-free control character is not left in the page); autoescape then makes it inert."""
    return printable(value) if isinstance(value, str) and not isinstance(value, Markup) else value


@lru_cache(maxsize=2)
def _environment(markdown: bool) -> Environment:
    return Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        finalize=markdown_text if markdown else html_text,
    )


def render(template: str, view: dict[str, Any]) -> str:
    return _environment(template.endswith(".md.j2")).get_template(template).render(**view)
