# The two commands of the README:
#   make demo   create .venv, install, run the workflow on the embedded demo data
#   make test   create/update .venv with the test extras, run the whole test suite
PYTHON ?= python3
VENV := .venv
CORES ?= 2

$(VENV)/.stamp-run: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[workflow]"
	touch $@

$(VENV)/.stamp-test: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.stamp-run

.PHONY: demo test lint
demo: $(VENV)/.stamp-run
	$(VENV)/bin/snakemake --cores $(CORES)

test: $(VENV)/.stamp-test
	$(VENV)/bin/python -m pytest -ra

lint: $(VENV)/.stamp-run
	$(VENV)/bin/snakemake --lint
