# The two commands of the README: `make plan` (the main job on the bundled default trace)
# and `make test` (the whole test suite). Each creates .venv and installs the project on
# first use; later uses reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: plan test bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

plan: $(STAMP)
	$(VENV)/bin/fleet-optimizer solve traces/sharegpt_batch_2k.csv --out plan.csv

test: $(STAMP) browser
	$(PY) -m pytest -q

# The report test opens a report in headless Chromium (Debian packages chromium and
# chromium-driver). Installed here when missing and apt-get is usable (root); otherwise
# that one test is skipped and says why.
browser:
	@if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver (for the report test)"; \
		apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1) || \
		echo "could not install chromium; the browser test will be skipped"; \
	fi

bench: $(STAMP)
	$(PY) benchmarks/load_trace.py
	$(PY) benchmarks/profile_fit.py
	$(PY) benchmarks/performance_model.py
	$(PY) benchmarks/planner.py
	$(PY) benchmarks/simulator.py
	$(PY) benchmarks/repair.py
	$(PY) benchmarks/gsm8k.py
	$(PY) benchmarks/simulator_speed.py
	$(PY) benchmarks/time_limits.py
	$(PY) benchmarks/pcmax.py
	$(PY) benchmarks/fleet_sizing.py
	$(PY) benchmarks/sweep.py
	$(PY) benchmarks/batch_files.py

clean:
	rm -rf $(VENV) plan.csv .pytest_cache
