"""The streaming side of skewwatch: the Faust worker (`stream.worker`), the command line and offline
commands (`stream.commands`), the HTML report (`stream.report`) and development tooling
(`stream.devkit`). Nothing is re-exported here: importing the package loads none of them.
"""
from __future__ import annotations

__all__: list[str] = []
