# Two commands for a newcomer: `make run` (the app on the shipped dataset) and `make test` (the whole suite).
# Both create .venv when missing and reinstall only when a requirements file changed.
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
# Loopback only by default: the app has no login. `make run HOST=0.0.0.0` opens it to the network on purpose.
HOST   ?= 127.0.0.1

.PHONY: run test

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.app-installed: requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# SchNet's CPU kernels, built here once so that the first training does not wait for the compiler.
$(VENV)/.kernels-built: mlipdiv/models/cfconv_cpu.cpp $(VENV)/.app-installed
	$(PY) -c "from mlipdiv.models.cfconv import cpu_kernels; print('CPU kernels:', 'ready' if cpu_kernels() else 'unavailable')"
	touch $@

$(VENV)/.test-installed: requirements.txt requirements-ray.txt $(VENV)/.kernels-built
	$(PY) -m pip install -q -r requirements-ray.txt
	touch $@

run: $(VENV)/.kernels-built
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: $(VENV)/.test-installed
	$(PY) -m pytest tests
