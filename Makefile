# Set-up and entry points. `make demo` and `make test` create their virtual environments on first use.
# torch is pinned to the CPU build that lies on this project's machines; an unpinned torch would pull a
# multi-GB CUDA build. The suite runs twice: on the newest transformers 5.x and on 4.46.3 (the paper's pin);
# the long end-to-end runs of the command line (marker e2e) run once, on 5.x, and so do the tests of the tools' own
# logic that no transformers version changes (marker version_independent: tables, figures, checks made before any
# model loads, the fused kernels against torch): on 4.46 the suite runs what depends on transformers (loading,
# configs, remote code, RoPE, tokenizers, the samplers against the official code), within its share of the budget.
#
# `make test` (CI's entry point) must finish within 15 minutes on 2 CPU cores, installs included: the two
# virtual environments install side by side (the downloads overlap; --no-compile leaves byte-compiling to the
# first import, which compiles only what the suite imports), then each suite runs on both cores with
# pytest-xdist (--dist loadfile: a test file's module fixtures, such as one lm-eval run read by several tests,
# are built once, on one worker).

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
VENV_TF446 := .venv-tf446
PIP_INSTALL := pip install -q --no-compile
PYTEST_ARGS ?= -q -n 2 --dist loadfile --durations=15
TF446_MARKERS := not e2e and not version_independent

.PHONY: demo test test-tf5 test-tf446 lint install venvs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/$(PIP_INSTALL) "$(TORCH)" -e ".[dev]" "transformers>=5"
	touch $@

$(VENV_TF446)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_TF446)
	$(VENV_TF446)/bin/$(PIP_INSTALL) "$(TORCH)" -e ".[dev]" "transformers==4.46.3"
	touch $@

install: $(VENV)/.installed

# both environments at once, whatever -j the caller gave
venvs:
	$(MAKE) -j2 $(VENV)/.installed $(VENV_TF446)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/longllada demo --out demo_output

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-tf5: $(VENV)/.installed
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS) tests

test-tf446: $(VENV_TF446)/.installed
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV_TF446)/bin/python -m pytest $(PYTEST_ARGS) -m "$(TF446_MARKERS)" tests

test: venvs
	$(MAKE) lint
	$(MAKE) test-tf5
	$(MAKE) test-tf446

clean:
	rm -rf $(VENV) $(VENV_TF446) demo_output
