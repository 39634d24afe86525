"""Text for people: every human-readable output of skewwatch (the alert printer, `baseline show`,
summaries, logs shown to a terminal) goes through here, and so does every number in it: `number`,
`percent` and `count` are the one format of the alert sentences, `skewwatch alerts`, `baseline show`
and the report card; `rounded` rounds the numbers of an alert's JSON evidence.

Field names, categories and model names come from producers: a hostile or broken one can carry
terminal control sequences (ESC, BEL, a carriage return that overwrites the line, bidirectional
overrides that reorder it). `printable` makes them visible instead of letting the terminal obey them.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["count", "number", "percent", "printable", "printable_tree", "quote_value", "rounded"]

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


def number(value: Any) -> str:
    """A number for people: 3 significant digits, k / M / G from 10,000, scientific only below 0.001.

    Parameters
    ----------
    value
        Any number (None, NaN and infinities are written as "-", "nan", "inf"; anything else as str).

    Returns
    -------
    str
        e.g. "70.1k", "1.5M", "612", "41.4", "0.307", "0.00123", "1.3e-06".

    Examples
    --------
    >>> [number(v) for v in (70_125, 1_499_000, 999_950, 612.4, 41.37, 0.30743, 0.0012345, 1.3e-6, -2.5e4, 0)]
    ['70.1k', '1.5M', '1M', '612', '41.4', '0.307', '0.00123', '1.3e-06', '-25k', '0']
    >>> number(None), number(float("nan")), number("US")
    ('-', 'nan', 'US')
    """
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    r = float(f"{x:.3g}")  # rounded first, so that 999,950 is "1M", not "1e+03k"
    a = abs(r)
    for at_least, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if a >= at_least:
            return f"{r / (at_least if suffix != 'k' else 1e3):.3g}{suffix}"
    if a >= 100 or a == 0:
        return f"{r:.0f}"
    return f"{r:.3g}"


def percent(share: Any) -> str:
    """A share (0..1) as a percentage, to 3 significant digits (enough to show a change: 10.2% -> 10.8%).

    >>> [percent(v) for v in (0.1017, 0.25, 0.042, 0.0004, 1.0, 0.0, 2e-7)]
    ['10.2%', '25%', '4.2%', '0.04%', '100%', '0%', '<0.001%']
    >>> percent(None)
    '-'
    """
    if share is None:
        return "-"
    p = 100 * float(share)
    if not math.isfinite(p):
        return str(p)
    if p == 0 or abs(p) >= 100:
        return f"{p:.0f}%"
    if abs(p) < 0.001:
        return "<0.001%"
    return f"{float(f'{p:.3g}'):g}%"


def count(n: int) -> str:
    """A count of events, values or labels: `number` of an integer.

    >>> count(950), count(2500), count(48_213), count(3_100_000)
    ('950', '2500', '48.2k', '3.1M')
    """
    return number(int(n))


def rounded(value: float) -> float:
    """A JSON-ready float with 4 significant digits (an alert's evidence is for reading, not recomputing).

    >>> rounded(0.123456), rounded(70125.3), rounded(float("inf"))
    (0.1235, 70130.0, inf)
    """
    x = float(value)
    return float(f"{x:.4g}") if math.isfinite(x) else x
