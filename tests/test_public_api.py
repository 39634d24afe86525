"""The public surface is explicit and documented: every module of the three packages declares
`__all__`, and everything it exports (and each public method of an exported class) has a docstring.

Modules are read as source (ast), not imported: the Faust app builds itself on import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p for pkg in ("detectors", "baselines", "stream") for p in (ROOT / pkg).rglob("*.py"))


def _exports(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                return [ast.literal_eval(e) for e in node.value.elts]
    return None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_declares_its_public_names_and_documents_them(path):
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), "the module has no docstring"
    exports = _exports(tree)
    assert exports is not None, "no __all__: declare the module's public names"
    defined = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    undocumented = []
    for name in exports:
        node = defined.get(name)
        if node is None:  # a constant, or a name re-exported from another module (checked there)
            continue
        if not ast.get_docstring(node):
            undocumented.append(name)
        if isinstance(node, ast.ClassDef):
            undocumented += [f"{name}.{m.name}" for m in node.body
                             if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                             and not m.name.startswith("_") and not ast.get_docstring(m)
                             and not any(isinstance(d, ast.Name) and d.id == "property" for d in m.decorator_list)]
    assert not undocumented, f"exported without a docstring: {', '.join(undocumented)}"
