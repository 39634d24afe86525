"""bench/RESULTS.md: each bench rewrites only its own block, between its markers."""
from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def markers(bench: str) -> tuple[str, str]:
    return f"<!-- bench/{bench}: begin -->", f"<!-- bench/{bench}: end -->"


def write_block(bench: str, body: str, heading: str | None = None) -> None:
    """Replace `bench`'s block with `body`, or append it (under `heading` when that heading is
    not in the file yet); the other benches' blocks are left as they are."""
    begin, end = markers(bench)
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    elif heading is not None and heading not in text:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n" + block + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(text)
