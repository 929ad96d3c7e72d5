# Two commands do everything: `make repro` (the pipeline) and `make test` (the test suite).
# Both set up .venv from the pinned requirements.txt first (a no-op when it is current).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HOME ?= $(CURDIR)/.cache/huggingface
export TOKENIZERS_PARALLELISM := false

.PHONY: setup repro test bench clean-cache

setup: $(STAMP)

# torch is pinned to the local CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

repro: setup
	dvc repro
	$(PY) -m ragtune.show metrics/eval.json

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m bench scifact --train-queries all
	$(PY) -m bench scifact --train-queries 100
	$(PY) -m bench scifact --train-queries 0

clean-cache:
	rm -rf .cache/embeddings checkpoints
