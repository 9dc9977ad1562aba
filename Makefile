# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv and install the project; re-running is quick when pyproject.toml has not changed.
PY ?= python3
# Where torch's CPU wheel comes from. Empty: the machine's pip configuration (here a local CPU wheel);
# elsewhere set TORCH_INDEX=https://download.pytorch.org/whl/cpu so pip does not pick the CUDA build.
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The JupyterLab extension: its sources, and the prebuilt bundle committed inside the package.
EXT_SRC := $(wildcard extensions/*.json extensions/src/*.ts extensions/style/*)
EXT_OUT := r1v4_nb/labextension/sources.sha256

.PHONY: setup demo test lint browser clean extension

# The JupyterLab extension's bundle is committed (r1v4_nb/labextension), so node is not needed: `develop` links
# it into the venv and enables the server extension (a wheel does that with its data files; an editable
# install does not). Where node and npm exist and extensions/ changed since the bundle was built, it is
# rebuilt first (scripts/labextension.py compares the sources' digest, not timestamps).
$(STAMP): pyproject.toml $(EXT_SRC) $(EXT_OUT)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python scripts/labextension.py build --if-stale
	$(BIN)/python scripts/labextension.py develop
	touch $(STAMP)

setup: $(STAMP)

# Rebuild the extension from extensions/ (needs node and npm); the venv links to the bundle, so that is all.
extension: setup
	$(BIN)/python scripts/labextension.py build

# The trained default agent (a tiny Qwen3-VL-MoE built by `r1v4-nb build-demo-model`) deciding live, with
# live tools: on the default task, then on a task generated with another seed, then on an interleaved task
# (crop the inset, reverse-search it, visit the page, answer). The hand-written demonstrations are replayed
# by `r1v4-nb demo --replay [--mode deepresearch]`.
demo: setup
	$(BIN)/r1v4-nb demo
	@echo
	$(BIN)/r1v4-nb demo --seed 7
	@echo
	$(BIN)/r1v4-nb demo --mode deepresearch

# Browser tests drive Debian's chromium; install it when missing (CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: run 'sudo apt-get install chromium' for the browser tests"; fi; }

lint: setup
	$(BIN)/ruff check .

test: setup browser lint
	$(BIN)/python -m pytest -q tests notebooks --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider

clean:
	rm -rf $(VENV) runs .pytest_cache
