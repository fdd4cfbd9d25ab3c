"""The jinja2 environments for report templates: HTML autoescaped, Markdown escaped by `markdown_text`.

Every value a template prints may come from the user's files (file, method, identity names, reasons
quoting them), so neither report can be turned into live markup: report.html through Jinja2's
autoescape, report.md through `markdown_text` applied to every printed value (jinja2's `finalize`).
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

#: Characters that start Markdown syntax (emphasis, code, links, tables, escapes); `_` only where it could
#: open or close emphasis (not inside a word such as rank1_other).
_MARKDOWN_ACTIVE = re.compile(r"([\\`*\[\]|~])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def markdown_text(value: Any) -> Any:
    """A value shown as written by a CommonMark/GFM renderer: HTML-significant characters become entities,
    Markdown punctuation is backslash-escaped, line breaks become spaces (a value never ends a table row
    or a list item). Non-strings are returned unchanged."""
    if not isinstance(value, str):
        return value
    flat = " ".join(value.splitlines())
    return _MARKDOWN_ACTIVE.sub(lambda m: "\\" + m.group(0), html.escape(flat, quote=False))


@lru_cache(maxsize=2)
def _environment(markdown: bool) -> Environment:
    return Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        finalize=markdown_text if markdown else None,
    )


def render(template: str, view: dict[str, Any]) -> str:
    return _environment(template.endswith(".md.j2")).get_template(template).render(**view)
