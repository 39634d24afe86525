PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv test-deps bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -q -e .

test-deps: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

demo: venv
	$(BIN)/skewwatch demo

test: test-deps
	$(BIN)/python -m pytest -q

bench: test-deps
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/e2e.py

clean:
	rm -rf $(VENV) build *.egg-info
