"""`skewwatch report`: a replay that records what it takes to see a drift, written as one
self-contained HTML page.

- `stream.report.command`: the subcommand (arguments, exit status);
- `stream.report.gather`: what is recorded along the replay, per model and feature;
- `stream.report.svg`: the plots, as inline SVG;
- `stream.report.html`: the page around them.

Nothing is re-exported: import from the module.
"""
from __future__ import annotations

__all__: list[str] = []
