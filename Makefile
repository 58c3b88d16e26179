# Fresh machine: `make demo` runs the main job, `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/spinenas search experiments/quickstart.yaml

# One pytest worker per core: most tests are single-threaded Python and graph building.
# TEST_WORKERS=2 (say) caps them where a CPU quota hides behind many visible cores.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

bench: $(STAMP)
	$(BIN)/python bench/decode.py

clean:
	rm -rf $(VENV) *.egg-info
