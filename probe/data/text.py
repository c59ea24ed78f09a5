"""Decoding of corpus text files: strict UTF-8 line by line, so an error names its line
and column, and a leading byte-order mark is removed and reported (once per file)."""
from __future__ import annotations

import sys

BOM = "\ufeff"
_NOTED: set[str] = set()


def utf8_problem(raw: bytes, exc: UnicodeDecodeError) -> str:
    """``invalid UTF-8 (reason) at column C (byte B of the line)`` for a line ``raw``."""
    column = len(raw[:exc.start].decode("utf-8", errors="replace")) + 1
    return f"invalid UTF-8 ({exc.reason}) at column {column} (byte {exc.start + 1} of the line)"


def strip_bom(text: str, path: object) -> str:
    """``text`` without a leading U+FEFF, which is reported on stderr (once per file)."""
    if not text.startswith(BOM):
        return text
    key = str(path)
    if key not in _NOTED:
        _NOTED.add(key)
        print(f"probe: note: {path} starts with a UTF-8 byte-order mark; it was removed", file=sys.stderr)
    return text[1:]
