# Two commands are all a newcomer needs:  `make lab`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.vitlab-installed
ARGS   ?=
# The exact versions every install uses (made by `make lock`; see README "Dependencies"). `make install
# LOCK=` installs from pyproject.toml's ranges instead (another platform, or to try newer releases).
LOCK   ?= requirements.lock
UV     := uv==0.13.9
# What the lock was made for; another Python or platform installs from the ranges, and says so.
LOCK_PYTHON   := 3.11
LOCK_PLATFORM := x86_64-manylinux_2_28

.PHONY: lab test test-browser browser figures site install lock lock-upgrade check-python clean-venv

# Stop at once, in one line, on a Python older than pyproject.toml's requires-python (>= 3.10).
PY_FOUND := $(shell $(PYTHON) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)
PY_OK    := $(shell $(PYTHON) -c 'import sys; print(int(sys.version_info >= (3, 10)))' 2>/dev/null)
check-python:
ifeq ($(PY_FOUND),)
	$(error vitlab needs Python >= 3.10 and '$(PYTHON)' was not found: run make PYTHON=/path/to/python3.11)
else ifneq ($(PY_OK),1)
	$(error vitlab needs Python >= 3.10 but $(PYTHON) is Python $(PY_FOUND): run make PYTHON=python3.11 (or any 3.10+))
endif
	@:

# Create the virtual environment and install vitlab (editable) with its notebook and test extras, every
# package at its version in the lock. Re-runs only when pyproject.toml or the lock changes.
$(STAMP): pyproject.toml $(LOCK) | check-python
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(LOCK)" ] && ! $(BIN)/python -c 'import sys, platform; sys.exit(not (sys.version.startswith("$(LOCK_PYTHON).") and platform.system() == "Linux" and platform.machine() == "x86_64"))'; then \
	  echo "Note: $(LOCK) is for CPython $(LOCK_PYTHON) on Linux x86_64; this is $$($(BIN)/python -c 'import platform; print(platform.python_version(), platform.system(), platform.machine())'): installing from pyproject.toml's ranges instead."; \
	  $(BIN)/python -m pip install -e ".[dev]" && echo ranges > $(STAMP); \
	elif [ -n "$(LOCK)" ]; then \
	  $(BIN)/python -m pip install -c $(LOCK) -e ".[dev]" && echo $(LOCK) > $(STAMP); \
	else \
	  $(BIN)/python -m pip install -e ".[dev]" && echo ranges > $(STAMP); \
	fi
	@test -f $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ARGS)

test: $(STAMP) browser
	$(BIN)/python -m pytest $(ARGS)

# Only the browser test: JupyterLab in headless Chromium (screenshots in test-artifacts/browser/).
test-browser: $(STAMP) browser
	$(BIN)/python -m pytest -m browser tests/test_browser.py $(ARGS)

# Refresh the lock from pyproject.toml with uv's resolver (uv pip compile). It keeps every version
# already in the lock that still fits, so only what pyproject.toml changed moves; `make lock-upgrade`
# moves everything to the newest releases. Both need the package registry.
lock: | check-python
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m uv --version >/dev/null 2>&1 || $(BIN)/python -m pip install -q "$(UV)"
	$(BIN)/python -m uv pip compile pyproject.toml --extra dev --python-version $(LOCK_PYTHON) \
	  --python-platform $(LOCK_PLATFORM) --no-emit-package vitlab --custom-compile-command "make lock" \
	  --quiet -o requirements.lock $(ARGS)

lock-upgrade:
	$(MAKE) lock ARGS="--upgrade $(ARGS)"

# Best effort, never an error: tests/test_browser.py drives the system Chromium (playwright from the
# test extra, no browser download). When it is missing, install Debian's `chromium` if we are root
# and apt-get exists; otherwise say so, and that test skips with the reason.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	    || [ -n "$$VITLAB_CHROMIUM" ]; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing chromium for the browser test (apt-get install -y chromium) ..."; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y chromium >/dev/null 2>&1 \
	    || { apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null 2>&1; } \
	    || echo "Could not install chromium; the browser test will be skipped."; \
	else \
	  echo "No chromium found: the browser test will be skipped (install it with: sudo apt-get install chromium)."; \
	fi

# The course as a static website: site/index.html and one page per lesson, from the committed notebooks
# (nbconvert; nothing is re-executed). Open site/index.html, or copy site/ to any static host.
site: $(STAMP)
	$(BIN)/python -m vitlab.site --out site

# The README's lesson pictures (docs/images/*.png) and lesson table, from vitlab/gallery.py.
figures: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m vitlab.gallery --out docs/images --readme README.md

clean-venv:
	rm -rf $(VENV)
