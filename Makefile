# make demo: from a fresh clone, builds the package into .venv and runs the whole pipeline
#            on the standard library's sources (DEMO_ARGS="--minutes 3" passes flags on).
# make test: builds the package into .venv and runs every check.
# make bench: runs the benchmark suites against the peers and writes benches/results.{md,png}.
# A second run reuses .venv and rebuilds only what changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := test,train,cc,ray
export PYO3_PYTHON := $(abspath $(BIN)/python)

.PHONY: build demo test rust-test lint py-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip maturin

# Dependencies and the editable install; redone only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

# Rebuild the extension in place (fast when the Rust code has not changed).
build: $(VENV)/.installed
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release --skip-install -q

# matplotlib draws the demo's loss plot; the demo itself needs only the train extra.
$(VENV)/.demo-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q "matplotlib>=3.5"
	touch $@

DEMO_ARGS ?=

demo: build $(VENV)/.demo-installed
	$(BIN)/fastgpt demo $(DEMO_ARGS)

rust-test: $(BIN)/python
	cargo fmt --all --check
	cargo clippy --all-targets --all-features -q -- -D warnings
	cargo test -q

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

py-test: build
	$(BIN)/python -m pytest -q

test: rust-test lint py-test

# The peers (bench extra) and matplotlib for the chart; redone only when pyproject.toml changes.
$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS),bench]"
	touch $@

BENCH_JSON := .benchmarks/latest.json

bench: $(VENV)/.bench-installed build
	mkdir -p $(dir $(BENCH_JSON))
	$(BIN)/python -m pytest benches --benchmark-enable --benchmark-autosave --benchmark-json=$(BENCH_JSON) \
		--benchmark-columns=min,median,ops -q
	$(BIN)/python benches/report.py $(BENCH_JSON) --markdown benches/results.md --chart benches/results.png

clean:
	rm -rf $(VENV) target
