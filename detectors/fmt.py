"""Text for people: every human-readable output of skewwatch (the alert printer, `baseline show`,
summaries, logs shown to a terminal) goes through here.

Field names, categories and model names come from producers: a hostile or broken one can carry
terminal control sequences (ESC, BEL, a carriage return that overwrites the line, bidirectional
overrides that reorder it). `printable` makes them visible instead of letting the terminal obey them.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

__all__ = ["printable", "printable_tree", "quote_value"]

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


#: containers nested deeper than this are quoted as "..." (a producer can send 1,000 levels)
_QUOTE_DEPTH = 8


def quote_value(value: Any, limit: int = 64) -> str:
    """A raw value as a diagnosis quotes it: a string as itself, anything else as its repr, at most
    `limit` characters, built without recursing into deep data.

    `repr` of a 1,000-deep list raises RecursionError and of a huge one costs its whole size; this
    writes lists, tuples and dicts itself, stops at `limit` characters and at a depth of 8 (deeper
    containers become "..."), and is otherwise `repr(value)[:limit]`.

    Parameters
    ----------
    value
        A value from an event (any JSON or msgpack value, or any Python object).
    limit
        Longest quote, in characters.

    Returns
    -------
    str
        The quote.

    Examples
    --------
    >>> quote_value("N/A"), quote_value([1, {"a": None}]), quote_value(float("nan"))
    ('N/A', "[1, {'a': None}]", 'nan')
    >>> deep = 1
    >>> for _ in range(10_000):
    ...     deep = [deep]
    >>> quote_value(deep)
    '[[[[[[[[...]]]]]]]]'
    """
    if isinstance(value, str):
        return value[:limit]
    text: list[str] = []
    size = 0
    for piece in _repr_pieces(value, _QUOTE_DEPTH):
        text.append(piece)
        size += len(piece)
        if size >= limit:
            break
    return "".join(text)[:limit]


def _repr_pieces(value: Any, depth: int) -> Iterator[str]:
    """repr(value) in pieces, lazily; containers below `depth` levels as "..."."""
    kind = type(value)
    if kind is list or kind is tuple or kind is dict:
        if depth == 0:
            yield "..."
            return
        yield "{" if kind is dict else "[" if kind is list else "("
        for i, item in enumerate(value.items() if kind is dict else value):
            if i:
                yield ", "
            if kind is dict:
                yield from _repr_pieces(item[0], depth - 1)
                yield ": "
                item = item[1]
            yield from _repr_pieces(item, depth - 1)
        yield "}" if kind is dict else "]" if kind is list else ",)" if len(value) == 1 else ")"
        return
    try:
        yield repr(value)
    except (RecursionError, ValueError):  # a deep custom object; an int too long to print
        yield f"<{kind.__name__}>"
