# The two commands a newcomer needs:   make run   and   make test
# Everything else (virtualenv, Python packages, Debian graphviz/chromium,
# the embedded model, the seeded dataset) is set up on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test setup system-deps bench clean-data

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

system-deps:
	./scripts/install-system-deps.sh

setup: $(BIN)/.installed system-deps

run: setup
	$(BIN)/r2ta seed
	$(BIN)/streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup

bench: setup
	$(BIN)/python -m benchmarks

clean-data:
	rm -rf data
