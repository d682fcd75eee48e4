# The two commands of the README:
#   make demo   create .venv, install, run the workflow on the embedded demo data
#   make test   create/update .venv with the test extras, run the whole test suite
#   make report run the demo (if not done yet) and build the self-contained HTML report
#               results/report.html (REPORT=results/report.zip for a zip archive)
PYTHON ?= python3
VENV := .venv
CORES ?= 2
REPORT ?= results/report.html

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

# The SLURM executor plugin (extra `cluster`), for `snakemake --profile profiles/slurm`. Kept
# out of the other extras: installed, it probes the cluster at every snakemake start.
$(VENV)/.stamp-cluster: pyproject.toml $(VENV)/.stamp-run
	$(VENV)/bin/pip install --quiet -e ".[cluster]"
	touch $@

.PHONY: demo test lint report cluster
cluster: $(VENV)/.stamp-cluster
demo: $(VENV)/.stamp-run
	$(VENV)/bin/snakemake --cores $(CORES)

test: $(VENV)/.stamp-test
	$(VENV)/bin/python -m pytest -ra

# ruff and snakefmt (test extra) with the pyproject config; fix with `ruff check --fix .` and
# `snakefmt Snakefile workflow/rules`. tests/test_lint.py runs the first two in `make test`.
lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(VENV)/bin/snakemake --lint

# The filter hides one harmless RuntimeWarning per job whose temporary input is gone, which
# `--report` prints for profile resources that use input.size_mb (snakemake issue #4280).
report: $(VENV)/.stamp-run
	$(VENV)/bin/snakemake --cores $(CORES)
	PYTHONWARNINGS="ignore:coroutine:RuntimeWarning" $(VENV)/bin/snakemake --report $(REPORT)
	@echo "report: $(REPORT)"
