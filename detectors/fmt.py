"""Text for people: every human-readable output of skewwatch (the alert printer, `baseline show`,
summaries, logs shown to a terminal) goes through here.

Field names, categories and model names come from producers: a hostile or broken one can carry
terminal control sequences (ESC, BEL, a carriage return that overwrites the line, bidirectional
overrides that reorder it). `printable` makes them visible instead of letting the terminal obey them.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["printable", "printable_tree"]

# C0 controls, DEL and C1 controls; the Unicode bidirectional embeddings, overrides and isolates;
# the line and paragraph separators (a terminal or a log viewer may break the line on them).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character written out as an escape, so a terminal shows it.

    Parameters
    ----------
    text
        Any text, e.g. a feature name taken from an event.

    Returns
    -------
    str
        The same text where control characters (newlines included) appear as ``\\x1b``,
        ``\\u202e``...; everything else is unchanged.

    Examples
    --------
    >>> printable("income\\x1b[2J\\x07")
    'income\\\\x1b[2J\\\\x07'
    >>> printable("país")
    'país'
    """
    return _UNPRINTABLE.sub(_escape, text)


def printable_tree(value: Any) -> Any:
    """`value` with `printable` applied to every string in it, keys included (dicts, lists, tuples).

    >>> printable_tree({"f\\r": ["a\\x1b", 1.5, None]})
    {'f\\\\x0d': ['a\\\\x1b', 1.5, None]}
    """
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_tree(k): printable_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(printable_tree(v) for v in value)
    return value
