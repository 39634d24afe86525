"""The `skewwatch` command line and its offline commands (baseline, replay, alerts). Nothing here
imports Faust: `skewwatch worker` and `skewwatch demo` load theirs only when chosen."""
from __future__ import annotations

__all__: list[str] = []
