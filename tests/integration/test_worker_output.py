"""What a worker writes to its log at the default level: its own lines, not Faust's start-up table."""
from __future__ import annotations

import pytest

from stream.devkit.synthetic import credit

pytestmark = pytest.mark.integration

#: the title of Faust's start-up table (its name in stylised letters, then the version)
FAUST_BANNER = "ƒaµS†"


def test_a_worker_at_info_does_not_print_fausts_start_up_banner(deployment):
    credit.baseline(0, rows=2_000).save(deployment.baselines / "credit.msgpack")
    worker = deployment.worker().wait_ready()
    log = worker.log_path.read_text(errors="replace")
    assert "baseline of model 'credit' loaded" in log  # the log is the worker's
    assert FAUST_BANNER not in log and "| transport   |" not in log, log[:2000]
