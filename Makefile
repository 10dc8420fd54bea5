# Two entry points: `make demo` (build the environment, run the smoke study end to end)
# and `make test` (build the environment, run the test suite). Both are idempotent.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test env results clean

env: $(STAMP)

# torch/torchvision come from PyPI (the CPU-only torch wheel some machines carry cannot
# import PyPI's torchvision), so pip must not be pointed at a local wheel folder.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	PIP_FIND_LINKS= $(BIN)/pip install -q --upgrade pip
	PIP_FIND_LINKS= $(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/raysweep run smoke --local --name demo
	$(BIN)/raysweep report runs/demo

# The committed results/showcase/: a small real CPU run and its report.
results: $(STAMP)
	$(BIN)/raysweep run showcase --local
	$(BIN)/raysweep report runs/showcase --out results/showcase

test: $(STAMP)
	$(BIN)/pytest -q -ra --durations=10

clean:
	rm -rf $(VENV) runs
