# corpus-pipeline: every target creates .venv and installs what it needs itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CP := $(BIN)/corpus-pipeline
DATA := corpus_pipeline/data/samples
WORKERS ?= 2
DEMO_OUT ?= out/demo

.PHONY: install test lint format demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check corpus_pipeline pipelines tests bench
	$(BIN)/ruff format --check corpus_pipeline pipelines tests bench
	$(BIN)/mypy corpus_pipeline

format: $(STAMP)
	$(BIN)/ruff format corpus_pipeline pipelines tests bench
	$(BIN)/ruff check --fix corpus_pipeline pipelines tests bench

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	rm -rf $(DEMO_OUT)
	$(CP) extract --input $(DATA)/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2 \
	    --books $(DATA) --output $(DEMO_OUT)/docs --workers $(WORKERS)
	@echo "demo output: $(DEMO_OUT)/docs"

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf out .bench .pytest_cache .mypy_cache .ruff_cache
