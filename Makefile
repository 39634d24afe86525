PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv test-deps system-deps bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Installed once, and again only when what the install builds from changes (the package is
# editable: Python edits need no reinstall; the C kernels do).
INSTALL_INPUTS := $(BIN)/python pyproject.toml setup.py detectors/_kernels.c detectors/_decode.c detectors/_columns.h

$(VENV)/.installed: $(INSTALL_INPUTS)
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-test: $(INSTALL_INPUTS)
	$(BIN)/pip install -q -e '.[test]'
	@touch $@ $(VENV)/.installed

venv: $(VENV)/.installed

test-deps: $(VENV)/.installed-test

demo: venv
	$(BIN)/skewwatch demo

# Debian tools used by some tests, installed when running as root with apt: promtool checks the
# Prometheus config and rules (tests/test_deploy.py), chromium renders `skewwatch report` pages
# (tests/test_report.py) and the worker's status page (tests/integration/test_status_page.py).
# Without them those checks skip and say why (with CI=true the rendering tests fail instead).
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    missing=""; \
	    command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	    command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	    if [ -n "$$missing" ]; then \
	        echo "installing Debian packages:$$missing"; \
	        (apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing) >/dev/null 2>&1 \
	            || echo "note: could not install$$missing; the tests that need them will say so"; \
	    fi; \
	fi

test: test-deps system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: test-deps
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/budget.py

clean:
	rm -rf $(VENV) build *.egg-info detectors/*.so
