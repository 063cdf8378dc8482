# The two commands of the README: `make plan` (the main job on the bundled default trace)
# and `make test` (the whole test suite). Each creates .venv and installs the project on
# first use; later uses reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: plan test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

plan: $(STAMP)
	$(PY) cli.py solve traces/sharegpt_batch_2k.csv --out plan.csv

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/load_trace.py
	$(PY) benchmarks/profile_fit.py
	$(PY) benchmarks/planner.py
	$(PY) benchmarks/simulator.py
	$(PY) benchmarks/repair.py

clean:
	rm -rf $(VENV) plan.csv .pytest_cache
