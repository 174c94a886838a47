# make demo | make test | make bench: each creates .venv and installs what it needs first.
# make gpu-check runs on a GPU machine with what its image has (no .venv, no network); make gpu-wheels, here,
# fetches the wheels that image lacks into .whl/, for the device run to carry.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Reinstall (and rebuild the C++ extension) whenever the package definition or C++ sources change.
DEPS   := pyproject.toml setup.py $(wildcard csrc/*)

.PHONY: demo test bench gpu-check gpu-wheels clean

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

# Two test processes, each taking whole files (a module's fixtures, a served page or the compile check, run once):
# on the 2-core VM the tests took 602 s this way against 760 s in one process. `python -m pytest` alone still works.
test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy sda/model sda/format sda/train sda/report.py sda/text.py sda/errors.py sda/config.py
	$(BIN)/python -m pytest -n 2 --dist loadfile

bench: $(VENV)/.installed-bench
	$(BIN)/python -m pytest bench --benchmark-only -rs -p no:cacheprovider --benchmark-columns=min,median,max,rounds
	$(BIN)/python bench/codebook_quality.py
	@echo "GPU figures: make gpu-check (bench/gpu_check.sh) on a CUDA machine (see bench/RESULTS.md)"

# Install, kernel tests on CUDA, kernel table, training-step times: one Markdown file, in under 5 minutes.
GPU_CHECK_OUT ?= gpu-check.md
gpu-check:
	PYTHON=$(PYTHON) bench/gpu_check.sh --out $(GPU_CHECK_OUT)

# soundfile, cffi and pycparser at this .venv's versions, for the GPU image's Python 3.12 (needs network).
gpu-wheels: $(VENV)/.installed
	$(BIN)/python bench/gpu_check.py --download-wheels

clean:
	rm -rf $(VENV) build *.egg-info sda/_sdafile*.so .pytest_cache .ruff_cache .mypy_cache .benchmarks
