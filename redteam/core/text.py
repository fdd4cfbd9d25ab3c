"""Text from the inputs made safe to show: one escaping rule for every output (terminal, log, reports).

File, folder, method and identity names come from outside. A name holding an ANSI escape sequence
(``\\x1b[31m``), a bell, a carriage return or a newline would, printed raw, rewrite the terminal or forge a
log line; XML 1.0 forbids control characters altogether (report.junit.xml would not parse); and a name
whose bytes are not UTF-8 (Python carries them as lone surrogates, PEP 383) cannot be written to a UTF-8
file at all. `printable` turns each such character into a visible escape (``\\x1b``, ``\\n``, ``\\xff``,
``\\u202e``), so what is shown is what the name holds, and never acts on the output.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

#: Unicode categories shown as escapes: controls, format characters (bidirectional overrides, zero-width
#: characters), surrogates, private-use and unassigned code points, line and paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: Lone surrogates; U+DC80..U+DCFF are the undecodable bytes 0x80..0xFF of a name (`surrogateescape`).
_SURROGATE = re.compile("[\ud800-\udfff]")


@lru_cache(maxsize=4096)
def _escaped(character: str) -> str | None:
    if character in _NAMED:
        return _NAMED[character]
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # the byte that was not UTF-8
    if unicodedata.category(character) not in _ESCAPED_CATEGORIES:
        return None
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control, format, surrogate, private-use or unassigned character shown as an escape.

    Args:
        text: any string, e.g. a message quoting a file name.
        keep_newlines: keep ``\\n`` as a line break (a message of several lines written by this program);
            every other such character is still escaped.

    Returns:
        A string of printable characters (plus ``\\n`` when `keep_newlines`), safe for a terminal, a log
        line, XML 1.0 and UTF-8.
    """
    if text.isprintable():
        return text
    out = []
    for character in text:
        escaped = None if (keep_newlines and character == "\n") else _escaped(character)
        out.append(character if escaped is None else escaped)
    return "".join(out)


def decodable(name: str) -> str:
    """A name as valid Unicode: the undecodable bytes of a file name (lone surrogates from `os.fsdecode`)
    become ``\\xNN`` escapes; every other character is kept. Used for the labels of input files, which
    reach caches, seeds, tables and reports that must encode them as UTF-8."""
    return _SURROGATE.sub(lambda match: _escaped(match.group(0)) or "", name)


def markup_text(text: str, *, keep_newlines: bool = False) -> str:
    """`printable` text, then escaped for rich's console markup (a name such as ``[bold]x[/bold]`` is shown
    as written): the form of every input-derived text printed to the terminal."""
    from rich.markup import escape

    return escape(printable(text, keep_newlines=keep_newlines))
