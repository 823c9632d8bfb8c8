# Two commands on a fresh machine: `make demo` and `make test`. Both go through `make setup`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
TORCH_VERSION := 2.13.0

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# Re-runs only when the dependency spec changes; a second `make setup` does nothing.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch pulls several GB of CUDA wheels.
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	# -qq: setuptools reports every editable install of remapped package dirs (envs/ -> posttrain.envs) as a
	# warning that asks nothing of the user; errors still print.
	$(BIN)/python -m pip install -qq -c constraints.txt -e '.[dev,trackers]'
	# Optional: bubblewrap is the code sandbox's strongest isolation (docs/rewards.md); never fatal, no prompt.
	command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; } >/dev/null 2>&1; } || echo "note: bubblewrap not installed; the code sandbox falls back to unshare or rlimits"
	touch $(STAMP)

demo: setup
	$(BIN)/posttrain run stage=all run.overwrite=true

test: setup
	$(BIN)/ruff check .
	bash .ci/pytest.sh

lint: setup
	$(BIN)/ruff check .

# Every benchmark whose numbers README quotes (several minutes on 2 cores).
bench: setup
	$(BIN)/python bench/envs.py --runs 3 --workers 2
	$(BIN)/python bench/rewards.py --repeats 3 --workers 2
	$(BIN)/python bench/rollout.py throughput --runs 5
	$(BIN)/python bench/rollout.py rsa-memory --T 1 2 4 8
	$(BIN)/python bench/rl_learner.py logprobs
	$(BIN)/python bench/serve.py --runs 3

clean:
	rm -rf runs .pytest_cache
