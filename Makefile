# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PKG_FILES := $(shell find benchmark datasets baselines leaderboard -name '*.py' -o -name '*.yaml' 2>/dev/null | sort)

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.torch: $(BIN)/python tools/install_torch.sh
	sh tools/install_torch.sh $(BIN)/python
	touch $@

# strict editable install: mypy follows it; a new module triggers a reinstall (PKG_FILES)
$(VENV)/.installed: pyproject.toml $(VENV)/.torch $(PKG_FILES)
	$(BIN)/python -m pip install --quiet -e ".[test]" --config-settings editable_mode=strict
	touch $@

demo: $(VENV)/.installed
	$(BIN)/qpebench run

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy -p qpebench

unit: $(VENV)/.installed
	$(BIN)/python -P -m pytest

test: lint typecheck unit

bench: $(VENV)/.installed
	$(BIN)/python -P benchmarks/store_read.py
	$(BIN)/python -P benchmarks/synthetic_build.py
	$(BIN)/python -P benchmarks/radar_read.py
	$(BIN)/python -P benchmarks/decompress.py
	$(BIN)/python -P benchmarks/colocate.py
	$(BIN)/python -P benchmarks/conv4d.py
	$(BIN)/python -P benchmarks/training.py
	$(BIN)/python -P benchmarks/metrics.py
	$(BIN)/python -P benchmarks/evaluation.py
	bash benchmarks/demo_fresh_clone.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
