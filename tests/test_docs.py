"""The repository stands alone: every repository path and module the documentation and the code's
docstrings and comments cite exists in it, and nothing cites the team's files outside it.

What counts as a citation (kept narrow, so that prose never trips it):

- a path: a token that starts with one of the repository's top-level directories and a slash
  (``detectors/events.py``, ``stream/worker/``, ``tests/test_fuzz.py::test_x`` checks the file);
  a ``*`` makes it a pattern that must match at least one file (``detectors/*.py``);
- a module: a dotted name that starts with one of the Python packages (``detectors.events.Limits``):
  its longest prefix that is a module or package must exist, and a name right after a package must
  appear in that package's ``__init__.py`` (``stream.worker`` does; a Faust ``stream.take`` does not);
- a relative Markdown link target (``[text](reliability.md)``), resolved from the document's folder.

Where: README.md, docs/*.md, bench/*.md, deploy/README.md; the comments and triple-quoted strings
(docstrings, help texts) of the Python files; the comment lines of the Makefile, Dockerfile,
docker-compose.yml and deploy/*.yml. The whole check takes well under a second.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP_DIRS = ("baselines", "bench", "deploy", "detectors", "docs", "examples", "stream", "tests")
PACKAGES = ("baselines", "detectors", "stream")
DOCUMENTS = ("README.md", "docs/*.md", "bench/*.md", "deploy/README.md")
PYTHON_DIRS = ("baselines", "bench", "detectors", "examples", "stream", "tests")
COMMENTED_FILES = ("Makefile", "Dockerfile", "docker-compose.yml", "deploy/*.yml")

_DIRS = "|".join(TOP_DIRS)
#: a token starting with a top-level directory and a slash, not inside a longer path or a URL
PATH = re.compile(rf"(?<![\w./~$:-])(?:{_DIRS})/[\w.*/-]*")
#: a dotted name starting with a package; one followed by a slash is a file name (`baselines.d/`)
MODULE = re.compile(rf"(?<![\w./-])(?:{'|'.join(PACKAGES)})(?:\.\w+)++(?!/)")
#: dotted names that are not modules: the worker's default baselines directory
NOT_MODULES = frozenset({"baselines.d"})
#: comments and triple-quoted strings of Python source; one-line strings are matched only to step over
#: a "#" inside them
_PYTHON_TEXT = re.compile(r"""
      \"\"\"(?P<double>[\s\S]*?)\"\"\"      # triple-quoted strings: docstrings, help texts
    | '\''(?P<single>[\s\S]*?)'\''
    | "(?:\\.|[^"\\\n])*"                # one-line strings, skipped
    | '(?:\\.|[^'\\\n])*'
    | (?P<comment>\#[^\n]*)
""", re.VERBOSE)
#: the target of a Markdown link or image
LINK = re.compile(r"\]\(([^)\s]+)\)")
#: citations of files outside the repository: the team's design document and notes, absolute paths
#: of the development machine
OUTSIDE = re.compile(r"\bDESIGN\.md\b|(?<![\w./-])(?:shared|notes)/[\w./-]*|/work/[\w./-]*")


# ---------------------------------------------------------------------------------- the texts
def _files(patterns: tuple[str, ...]) -> list[Path]:
    return sorted({p for pattern in patterns for p in ROOT.glob(pattern) if p.is_file()})


def _python_files() -> list[Path]:
    # not this file: its examples cite missing paths on purpose
    return sorted(p for d in PYTHON_DIRS for p in (ROOT / d).rglob("*.py")
                  if "__pycache__" not in p.parts and p != Path(__file__).resolve())


def _python_texts(source: str) -> Iterator[tuple[int, str]]:
    r"""(first line, text) of each comment and triple-quoted string (docstrings, help texts) of Python
    source: one regular-expression pass, many times faster than `tokenize` and `ast`.

    >>> source = 'x = "# not a comment"  # a comment\n' + "'''a\ndocstring'''\n"
    >>> list(_python_texts(source))
    [(1, '# a comment'), (2, 'a\ndocstring')]
    """
    line, position = 1, 0
    for m in _PYTHON_TEXT.finditer(source):
        text = m.group("comment") or m.group("double") or m.group("single")
        if text:
            line += source.count("\n", position, m.start())
            position = m.start()
            yield line, text


def _comment_lines(path: Path) -> Iterator[tuple[int, str]]:
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("#"):
            yield lineno, line


@cache
def texts() -> tuple[tuple[Path, int, str], ...]:
    """(file, first line, text) of everything whose citations are checked."""
    out = [(path, 1, path.read_text(encoding="utf-8")) for path in _files(DOCUMENTS)]
    for path in _python_files():
        out += [(path, line, text) for line, text in _python_texts(path.read_text(encoding="utf-8"))]
    for path in _files(COMMENTED_FILES):
        out += [(path, line, text) for line, text in _comment_lines(path)]
    return tuple(out)


def _where(path: Path, first_line: int, text: str, offset: int) -> str:
    return f"{path.relative_to(ROOT)}:{first_line + text.count(chr(10), 0, offset)}"


# ---------------------------------------------------------------------------------- the checks
def path_exists(cited: str) -> bool:
    """Whether a cited repository path (or pattern) names something in the repository.

    >>> path_exists("detectors/events.py"), path_exists("detectors/*.py"), path_exists("stream/nothing.py")
    (True, True, False)
    """
    cited = cited.rstrip(".")
    if "*" in cited:
        return any(ROOT.glob(cited))
    return (ROOT / cited).exists()


def module_exists(dotted: str) -> bool:
    """Whether a cited dotted name is a module of the repository, or a name in one.

    >>> module_exists("detectors.events.Limits"), module_exists("stream.worker.config")
    (True, True)
    >>> module_exists("stream.take"), module_exists("stream.replay")
    (False, False)
    """
    parts = dotted.split(".")
    here = ROOT / parts[0]
    for part in parts[1:]:
        if (here / part).is_dir():
            here = here / part
        elif (here / f"{part}.py").is_file() or (here / f"{part}.c").is_file():
            return True  # what follows is a name in that module
        else:
            init = here / "__init__.py"
            return init.is_file() and re.search(rf"\b{re.escape(part)}\b", init.read_text(encoding="utf-8")) is not None
    return (here / "__init__.py").is_file()


def missing_citations() -> list[str]:
    """"file:line: what" of every cited path, module or link that is not in the repository."""
    missing = []
    for path, first_line, text in texts():
        for m in PATH.finditer(text):
            if not path_exists(m.group()):
                missing.append(f"{_where(path, first_line, text, m.start())}: {m.group().rstrip('.')}")
        for m in MODULE.finditer(text):
            if m.group() not in NOT_MODULES and not module_exists(m.group()):
                missing.append(f"{_where(path, first_line, text, m.start())}: module {m.group()}")
        if path.suffix == ".md":
            for m in LINK.finditer(text):
                target = m.group(1).split("#", 1)[0]
                if target and "://" not in target and not target.startswith("mailto:") \
                        and not (path.parent / target).exists():
                    missing.append(f"{_where(path, first_line, text, m.start())}: link {m.group(1)}")
    return missing


def outside_citations() -> list[str]:
    """"file:line: what" of every citation of a file outside the repository."""
    return [f"{_where(path, first_line, text, m.start())}: {m.group()}"
            for path, first_line, text in texts() for m in OUTSIDE.finditer(text)]


def test_the_checked_texts_are_found():
    """A guard on the guard: a moved document or a broken pattern must not make the checks vacuous."""
    files = {path.relative_to(ROOT).as_posix() for path, _, _ in texts()}
    assert {"README.md", "docs/contracts.md", "docs/broker.md", "detectors/events.py", "Makefile"} <= files
    cited = sum(1 for _, _, text in texts() for _ in PATH.finditer(text))
    assert cited > 50


def test_every_cited_repository_path_exists():
    missing = missing_citations()
    if missing:
        pytest.fail(f"{len(missing)} citation(s) of paths or modules not in the repository "
                    "(file:line: what is cited):\n  " + "\n  ".join(missing), pytrace=False)


def test_nothing_cites_files_outside_the_repository():
    outside = outside_citations()
    if outside:
        pytest.fail("citations of files outside the repository (bring what is needed into docs/, "
                    "e.g. docs/contracts.md or docs/broker.md):\n  " + "\n  ".join(outside), pytrace=False)
