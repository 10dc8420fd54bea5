# Two entry points: `make demo` (build the environment, run the smoke study end to end)
# and `make test` (build the environment, run the test suite). Both are idempotent.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test env results clean cluster-check gpu-wheels

env: $(STAMP)

# torch/torchvision come from PyPI (the CPU-only torch wheel some machines carry cannot
# import PyPI's torchvision), so pip must not be pointed at a local wheel folder. uv
# installs the same versions as pip in a third of the time (62 s against 185 s on the
# development machine, no cache). --compile-bytecode, as pip does: where
# PYTHONDONTWRITEBYTECODE is set (it is on the development machine) nothing is compiled
# later, and every process would then compile torch again (~50% more CPU per import).
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	PIP_FIND_LINKS= $(BIN)/pip install -q uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[test]'
	touch $(STAMP)

# Real images when Fashion-MNIST is on this machine (Debian's dataset-fashion-mnist, or
# ~/.cache/raysweep/data), else the synthetic set; the first line printed says which.
demo: $(STAMP)
	@folder=$$($(BIN)/python -c "from raysweep.datasets.readers import fashion_mnist_folder as f; \
		print(f('~/.cache/raysweep/data') or '')"); \
	if [ -n "$$folder" ]; then \
		echo "demo: Fashion-MNIST from $$folder (real images)"; \
		run=demo_fashion_mnist; overrides="--set dataset=fashion_mnist"; \
	else \
		echo "demo: synthetic images (apt-get install dataset-fashion-mnist for real ones)"; \
		run=demo_synthetic; overrides=""; \
	fi; \
	$(BIN)/raysweep run smoke --local --name $$run $$overrides \
		&& echo "demo: the report (tables, plots, provenance):" \
		&& $(BIN)/raysweep report runs/$$run \
		&& echo "demo: next, try: $(BIN)/raysweep status runs/$$run;" \
			"$(BIN)/raysweep show ablations --no-estimate; $(BIN)/raysweep list models;" \
			"$(BIN)/raysweep tensorboard runs/$$run"

# The committed results/showcase/: a small real CPU run and its report.
results: $(STAMP)
	$(BIN)/raysweep run showcase --local
	$(BIN)/raysweep report runs/showcase --out results/showcase

# Two pytest processes (pytest-xdist) sharing one local Ray for the tests that need none of
# their own (tests/conftest.py::_shared_ray); a test module runs whole in one of them (`--dist loadfile`: its module fixtures, a
# fake autoscaling cluster or a two-node loopback Ray, start once). Not `--dist loadgroup`:
# under pytest 9.2 its groups are silently ignored (xdist renames `item._nodeid`, which
# pytest no longer reads) and every module was split test by test. --no-loadscope-reorder:
# modules in collection order (benchmarks/, core/, datasets/, engine/ first: the dearest
# ones), not xdist's default of most tests first, which left the few-test Ray modules for
# last (2026-12-07: .ci/run 1,387 s and 2,680 busy CPU-s against 1,543 s and 2,980, one
# run each, same evening). TEST_WORKERS=0: one process, as before.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/pytest -q -ra --durations=10 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# cluster.yaml launched for real by Ray's cluster launcher on a loopback cluster of this
# machine, walking docs/cluster.md (cluster/check.py). As root: it adds a user for the node
# and starts an sshd on 127.0.0.1 (apt-get installs openssh-server and rsync if missing).
# A few minutes; not part of `make test`.
cluster-check: $(STAMP)
	$(BIN)/python cluster/check.py

# What benchmarks/gpu_check.sh installs on a GPU machine without network: Ray,
# tensorboardX, Optuna and their needs for its Python 3.12, as one xz tarball (52 MB,
# git-ignored) that the device tool carries with the working tree (`carry: [.gpu-wheels]`).
gpu-wheels: $(STAMP)
	$(BIN)/python -m benchmarks.gpu_wheels --out .gpu-wheels/site.tar.xz

clean:
	rm -rf $(VENV) runs
