"""No pickle, eval or exec in the data path: baselines, checkpoints and events are data, never code."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA_PATH = ("detectors", "baselines", "stream")
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
FORBIDDEN_CALLS = {"eval", "exec", "__import__"}


def _sources():
    for pkg in DATA_PATH:
        yield from sorted((ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", list(_sources()), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_pickle_or_eval(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names = {(node.module or "").split(".")[0]}
        else:
            names = set()
        assert not names & FORBIDDEN_MODULES, f"{path}:{node.lineno} imports {names & FORBIDDEN_MODULES}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{path}:{node.lineno} calls {node.func.id}()"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            owner = node.func.value
            is_yaml = isinstance(owner, ast.Name) and owner.id == "yaml"
            assert not is_yaml, f"{path}:{node.lineno}: yaml.load (use safe_load)"


def test_the_scan_sees_a_violation(tmp_path):
    """The scan above can fail: it flags pickle and eval when they are there."""
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle\nx = eval('1')\n")
    with pytest.raises(AssertionError):
        test_no_pickle_or_eval(bad)


def test_servers_bind_loopback_by_default():
    from stream.worker import config

    assert config.load({}).web_host == "127.0.0.1"
    assert config.load({}).broker.startswith("kafka://127.0.0.1")
