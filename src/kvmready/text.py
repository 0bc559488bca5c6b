"""Text from hosts and reports, made safe to write.

Host strings (names, releases, drivers, file names in archives) are data:
`clean_text` makes any of them encodable as UTF-8, and `printable` makes
them safe for a terminal, where a control character would be a command
(`ESC ]0;title BEL` renames the window, `ESC [2J` clears the screen) and a
bidirectional override would reorder what the reader sees.
"""

import re
from typing import Iterator

# C0 and C1 controls, DEL, and the bidirectional embedding/override/isolate characters.  A pattern
# string, compiled by `re` on first use: compiling it costs most of a millisecond, and JSON never uses it.
_UNPRINTABLE = "[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"


def clean_text(text: str) -> str:
    """Text that any UTF-8 writer accepts: undecodable bytes (surrogate escapes) become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)


def _escape(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` for a terminal: UTF-8-safe, every control or bidi character shown as an escape (`\\x1b`)."""
    return re.sub(_UNPRINTABLE, _escape, clean_text(text))


def each_line(text: str) -> Iterator[str]:
    """The lines of `text` one at a time: a 4096-CPU cpuinfo is 7 MB, a fleet file millions of lines, and a
    list of their lines would cost more memory than the text itself."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            end = len(text)
        yield text[start:end]
        start = end + 1
