# Two commands are all a newcomer needs:  `make lab`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.vitlab-installed
ARGS   ?=

.PHONY: lab test test-browser browser figures install clean-venv

# Create the virtual environment and install vitlab (editable) with its notebook and test extras.
# Re-runs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ARGS)

test: $(STAMP) browser
	$(BIN)/python -m pytest $(ARGS)

# Only the browser test: JupyterLab in headless Chromium (screenshots in test-artifacts/browser/).
test-browser: $(STAMP) browser
	$(BIN)/python -m pytest -m browser tests/test_browser.py $(ARGS)

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

# The README's lesson pictures (docs/images/*.png) and lesson table, from vitlab/gallery.py.
figures: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m vitlab.gallery --out docs/images --readme README.md

clean-venv:
	rm -rf $(VENV)
