# Set-up and entry points. `make demo` and `make test` create their virtual environments on first use.
# torch is pinned to the CPU build that lies on this project's machines; an unpinned torch would pull a
# multi-GB CUDA build. The suite runs twice: on the newest transformers 5.x and on 4.46.3 (the paper's pin);
# the long end-to-end runs of the command line (marker e2e) run once, on 5.x, to keep both within 15 minutes.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
VENV_TF446 := .venv-tf446
PYTEST_ARGS ?= -q

.PHONY: demo test test-tf5 test-tf446 lint install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q "$(TORCH)"
	$(VENV)/bin/pip install -q -e ".[dev]" "transformers>=5"
	touch $@

$(VENV_TF446)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_TF446)
	$(VENV_TF446)/bin/pip install -q --upgrade pip
	$(VENV_TF446)/bin/pip install -q "$(TORCH)"
	$(VENV_TF446)/bin/pip install -q -e ".[dev]" "transformers==4.46.3"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/longllada demo --out demo_output

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test-tf5: $(VENV)/.installed
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS) tests

test-tf446: $(VENV_TF446)/.installed
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV_TF446)/bin/python -m pytest $(PYTEST_ARGS) -m "not e2e" tests

test: lint test-tf5 test-tf446

clean:
	rm -rf $(VENV) $(VENV_TF446) demo_output
