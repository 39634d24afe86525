"""The README's five-minute walk-through runs as written, from the clone's root, and writes its files into
its scratch directory, never into the clone."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = "/tmp/skewwatch-walk"
#: what the walk-through writes
FILES = ("train.csv", "events.jsonl", "credit.msgpack", "rejected.jsonl", "alerts.jsonl", "report.html")


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Five-minute walk-through"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def _mtimes() -> dict[str, float | None]:
    return {name: (ROOT / name).stat().st_mtime if (ROOT / name).exists() else None for name in FILES}


def test_the_walkthrough_runs_and_writes_only_into_its_scratch_directory(tmp_path):
    script = walkthrough()
    assert script.startswith("make venv && . .venv/bin/activate\n") and SCRATCH in script
    # the test's own venv stands for `make venv`; its scratch directory for /tmp (tests run side by side);
    # a pager needs a terminal
    script = script.replace("make venv && . .venv/bin/activate\n", "").replace(SCRATCH, str(tmp_path / "walk"))
    before = _mtimes()
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", "less() { cat > /dev/null; }\n" + script],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _mtimes() == before, "the walk-through wrote into the clone"
    written = {name: (tmp_path / "walk" / name).stat().st_size for name in FILES}
    assert written["rejected.jsonl"] == 0 and all(written[name] for name in FILES if name != "rejected.jsonl")
    assert "replay: alerts" in done.stderr and "report: wrote report.html" in done.stderr
