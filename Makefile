# make test: from a fresh clone, builds the package into .venv and runs every check.
# A second run reuses .venv and rebuilds only what changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := test,train,cc,ray
export PYO3_PYTHON := $(abspath $(BIN)/python)

.PHONY: build test rust-test py-test bench clean

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

rust-test: $(BIN)/python
	cargo fmt --all --check
	cargo clippy --all-targets --all-features -q -- -D warnings
	cargo test -q

py-test: build
	$(BIN)/python -m pytest -q

test: rust-test py-test

bench: build
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS),bench]"
	$(BIN)/python -m pytest benches --benchmark-enable --benchmark-autosave --benchmark-columns=min,median,ops -q

clean:
	rm -rf $(VENV) target
