# The project's commands. Each creates .venv and installs what it needs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# checkov (static analysis of examples/aws-batch/terraform) lives in its own venv: its pins clash
# with the project's (boto3, moto). The stamp names the version, so changing the pin reinstalls.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV    := .venv-checkov
CHECKOV_STAMP   := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
DOCS_STAMP      := $(VENV)/.installed-docs

.PHONY: test demo bench docs lint typecheck pytest checkov clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $(CHECKOV_STAMP)

## make test: ruff, mypy --strict, pytest and checkov on the example Terraform
test: $(STAMP) lint typecheck checkov pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict src/spotlake

pytest: $(STAMP)
	$(VENV)/bin/pytest -q -n auto

# Offline (--skip-download); a failed check fails the build. Skips are justified inline (#checkov:skip=).
checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --directory examples/aws-batch/terraform --framework terraform \
	  --quiet --compact --skip-download

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

## make docs: the documentation site (mkdocs.yml) into site/; strict: a broken link or reference fails it
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

## make demo: a real collection cycle against the bundled Azure emulator into ./spotlake-data
demo: $(STAMP)
	$(PY) examples/demo.py

## make bench: benchmarks with baselines, report in benchmarks/results/
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .mypy_cache .ruff_cache .pytest_cache site
