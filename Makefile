# enjournal: `make demo` runs the platform with a demo population, `make test` runs the tests.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-security bench-terminology bench-helsenorge definitions catalogs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/enjournal demo --data ./data

EXAMPLES := .cache/hl7.fhir.r4.examples-4.0.1/package/Bundle-searchParams.json

$(EXAMPLES):
	$(PYTHON) scripts/fetch_examples.py

test: $(STAMP) $(EXAMPLES)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check enjournal tests bench scripts
	$(BIN)/ruff format --check enjournal tests bench scripts
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

bench-security: $(STAMP)
	$(BIN)/python -m bench.security

bench-terminology: $(STAMP)
	$(BIN)/python -m bench.terminology

bench-helsenorge: $(STAMP)
	$(BIN)/python -m bench.helsenorge

bench-velferdsteknologi: $(STAMP)
	$(BIN)/python -m bench.velferdsteknologi

bench-bulk-export: $(STAMP)
	$(BIN)/python -m bench.bulk_export

bench-views: $(STAMP)
	$(BIN)/python -m bench.views

definitions: $(STAMP)
	$(BIN)/python scripts/build_definitions.py

# The helsenorge portal's messages: extract, update nb and nn, list what needs translating.
catalogs: $(STAMP)
	$(BIN)/python scripts/update_catalogs.py

clean:
	rm -rf $(VENV) .cache data
