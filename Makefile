# Two commands for a newcomer: `make run` (the app on the shipped dataset) and `make test` (the whole suite).
# Both create .venv when missing and reinstall only when a requirements file (or pyproject.toml) changed.
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
# Loopback only by default: the app has no login. `make run HOST=0.0.0.0` opens it to the network on purpose.
HOST   ?= 127.0.0.1

.PHONY: run test study study-export study-report

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The pins first, then the project itself (editable, no further dependencies): `.venv/bin/mlipdiv --help` works.
$(VENV)/.app-installed: requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# SchNet's and PaiNN's CPU kernels, built here once so that the first training does not wait for the compiler.
$(VENV)/.kernels-built: mlipdiv/models/cfconv_cpu.cpp mlipdiv/models/painn_cpu.cpp mlipdiv/models/kernel_checks.h \
		$(VENV)/.app-installed
	$(PY) -c "from mlipdiv.models.cfconv import cpu_kernels; print('CPU kernels:', 'ready' if cpu_kernels() else 'unavailable')"
	$(PY) -c "from mlipdiv.models.painn_ops import cpu_kernels; print('PaiNN CPU kernels:', 'ready' if cpu_kernels() else 'unavailable')"
	touch $@

# Test runner and checks (requirements-test.txt) and the Ray engine the sweep tests drive.
$(VENV)/.test-installed: requirements-test.txt requirements-ray.txt $(VENV)/.kernels-built
	$(PY) -m pip install -q -r requirements-test.txt -r requirements-ray.txt
	touch $@

run: $(VENV)/.kernels-built
	$(PY) app.py --server.address $(HOST) --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

# The static checks first (seconds; configured in pyproject.toml), then the whole suite in TEST_WORKERS processes
# (pytest-xdist): one file stays in one process, so a browser module starts its app server once. Many tests wait on
# a server, a browser or a subprocess, so two workers gain even on two cores; TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile --durations=20

# The study of docs/RESULTS.md (issue 16): many CPU-hours, so it is computed in sittings. `make study` imports the
# finished runs shipped in docs/results/runs (a fresh clone continues where the last sitting stopped), then trains
# what is missing; stop it at any time (Ctrl-C, SIGTERM) and run it again. `make study-export` adds the runs that
# finished since to docs/results/runs (commit them); `make study-report` analyses the whole study into docs/.
STUDY_HOME ?= runs/study
STUDY_OUT  ?= runs/study-out
SHIPPED_RUNS := docs/results/runs

study: $(VENV)/.kernels-built
	if [ -d $(SHIPPED_RUNS) ]; then MLIPDIV_HOME=$(STUDY_HOME) $(PY) -m mlipdiv runs import $(SHIPPED_RUNS); fi
	MLIPDIV_HOME=$(STUDY_HOME) $(PY) -m mlipdiv.analysis.study --preset study --out $(STUDY_OUT) --train-only

study-export: $(VENV)/.app-installed
	MLIPDIV_HOME=$(STUDY_HOME) $(PY) -m mlipdiv runs export $(SHIPPED_RUNS)

# the analysis with the run folders (information gap, domain, element references), then the page from the tables
# (the first step's error-model fits are thrown away, so it skips their bootstrap and noise calibration)
study-report: $(VENV)/.app-installed
	MLIPDIV_HOME=$(STUDY_HOME) $(PY) -m mlipdiv.analysis.study --analyse-only --out $(STUDY_OUT) --no-figures \
		--n-boot 0 --n-sim 1
	cp $(addprefix $(STUDY_OUT)/,results.csv curves.csv references.csv infogap.csv domain.csv) docs/results/
	$(PY) -m mlipdiv.analysis.study --analyse-only --out docs/results --figures docs/figures --page docs/RESULTS.md
