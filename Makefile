# make demo | make test | make bench: each creates .venv and installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Reinstall (and rebuild the C++ extension) whenever the package definition or C++ sources change.
DEPS   := pyproject.toml setup.py $(wildcard csrc/*)

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The tests also read back what --tensorboard writes, so they install that extra too.
$(VENV)/.installed: $(BIN)/python $(DEPS)
	$(BIN)/python -m pip install -e '.[dev,tensorboard]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install -e '.[dev,tensorboard,bench]'
	touch $@

# The demo trains on a generated collection (written to models/demo-data) and prints the report.
demo: $(VENV)/.installed
	$(BIN)/sda train --demo

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy sda/model sda/format sda/train sda/report.py sda/text.py sda/errors.py sda/config.py
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-bench
	$(BIN)/python -m pytest bench --benchmark-only -rs -p no:cacheprovider --benchmark-columns=min,median,max,rounds
	$(BIN)/python bench/codebook_quality.py
	@echo "GPU figures: python bench/gpu_kernels.py on a CUDA machine (see bench/RESULTS.md)"

clean:
	rm -rf $(VENV) build *.egg-info sda/_sdafile*.so .pytest_cache .ruff_cache .mypy_cache .benchmarks
