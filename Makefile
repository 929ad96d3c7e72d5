# Two commands do everything: `make repro` (the pipeline) and `make test` (the test suite).
# Both set up .venv from the pinned requirements.txt first (a no-op when it is current).
# `make plots` draws the pipeline's plots into dvc_plots/index.html, a page that works offline.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HOME ?= $(CURDIR)/.cache/huggingface
export TOKENIZERS_PARALLELISM := false

.PHONY: setup repro plots test bench clean-cache

setup: $(STAMP)

# torch is pinned to the local CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
# Bytecode is compiled on every core (pip compiles on one: setup 84 -> 62 s); like pip, a file that does not
# compile (torch ships one for Python 3.12 only) is skipped.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --no-compile -r requirements.txt
	$(PY) -c "import compileall; compileall.compile_dir('$(VENV)/lib', quiet=2, workers=0)"
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

repro: setup
	dvc repro
	$(PY) -m ragtune.show metrics/eval.json

# The plots page loads vega, vega-lite and vega-embed from its own folder (.dvc/plots/page.html, set as
# plots.html_template in .dvc/config), never from a CDN: fetched once from the npm registry into
# .cache/vega/, then copied next to each page drawn.
PLOTS_DIR  := dvc_plots
VEGA_DIR   := .cache/vega
VEGA_PKGS  := vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
VEGA_JS    := vega.min.js vega-lite.min.js vega-embed.min.js
VEGA_STAMP := $(VEGA_DIR)/.fetched

plots: setup $(VEGA_STAMP)
	dvc plots show -o $(PLOTS_DIR)
	cp $(addprefix $(VEGA_DIR)/,$(VEGA_JS)) $(PLOTS_DIR)/
	@echo "$(PLOTS_DIR)/index.html: open it in a browser; it works offline (vega is in $(PLOTS_DIR)/)."
	@echo "A page written elsewhere (dvc plots diff -o DIR) needs $(VEGA_JS) from $(VEGA_DIR)/ copied next to it;"
	@echo "without them it shows a notice in place of each plot."

$(VEGA_STAMP):
	@mkdir -p $(VEGA_DIR)
	@cd $(VEGA_DIR) && npm pack --loglevel=error $(VEGA_PKGS) >npm.log 2>&1 || { cat npm.log; \
	  echo "make plots: could not fetch $(VEGA_PKGS) from the npm registry (npm pack, above)."; \
	  echo "Without them the plots page shows a notice instead of plots: rerun with access to the registry,"; \
	  echo "or put $(VEGA_JS) (build/*.min.js of those packages) into $(VEGA_DIR)/ and touch $@."; exit 1; }
	cd $(VEGA_DIR) && for f in vega-*.tgz; do tar -xzf "$$f" --strip-components=2 "package/build/$${f%-*}.min.js"; done
	rm -f $(VEGA_DIR)/vega-*.tgz $(VEGA_DIR)/npm.log
	touch $@

# One pytest worker per core; the session's e2e repro is built once, in the background (tests/conftest.py).
# The 15 slowest tests are listed at the end, to see where the time goes.
test: setup
	$(PY) -m pytest -q -n auto --dist load --durations=15

bench: setup
	$(PY) -m bench scifact --train-queries all
	$(PY) -m bench scifact --train-queries 100
	$(PY) -m bench scifact --train-queries 0

clean-cache:
	rm -rf .cache/embeddings checkpoints
