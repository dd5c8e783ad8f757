# corpus-pipeline: every target creates .venv and installs what it needs itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TRAIN_STAMP := $(VENV)/.installed-train
CP := $(BIN)/corpus-pipeline
SAMPLES := corpus_pipeline/data/samples

# make wiki SEQ=128|384|512 [WIKI_DUMP=path-or-url] [BOOKS=dir] [OUT=dir] [FORMATS=hdf5]
#          [WORKERS=n] [RUNNER=DataflowRunner] [PACK=1|0] [BEAM_ARGS="..."]
SEQ ?= 128
LANG_ ?= en
DATE ?= latest
DUMPS ?= dumps
WIKI_DUMP ?=
BOOKS ?=
OUT ?= out/wiki-$(SEQ)
# hdf5 alone by default: the full English dump then needs ~330 GB of disk (docs, unpacked and
# packed); FORMATS=all needs ~1.9 TB (`run` prints its estimate and refuses when it does not fit).
FORMATS ?= hdf5
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
RUNNER ?=
PACK ?= 1
BEAM_ARGS ?=
# MAX_DOCS=N: a quick try on the first N documents of the input (--max-docs).
MAX_DOCS ?=
DEMO_OUT ?= out/demo
PRESET_128 := phase1
PRESET_384 := 384
PRESET_512 := phase2
PRESET = $(or $(PRESET_$(SEQ)),$(error SEQ must be 128, 384 or 512))

comma := ,
# The format the report is read from: hdf5 when all are written, else the first one given.
REPORT_FORMAT = $(if $(filter all,$(FORMATS)),hdf5,$(firstword $(filter hdf5 tfrecord mmap,$(subst $(comma), ,$(FORMATS)))))

RUN_FLAGS = --preset $(PRESET) --format $(FORMATS) --workers $(WORKERS) \
	$(if $(filter 1,$(PACK)),--pack) $(if $(RUNNER),--runner $(RUNNER)) \
	$(if $(MAX_DOCS),--max-docs $(MAX_DOCS)) $(BEAM_ARGS)

.PHONY: install install-train test lint format demo wiki books bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

$(TRAIN_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,train,consumers,dask,hf]'
	touch $(TRAIN_STAMP)

install: $(STAMP)

install-train: $(TRAIN_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check corpus_pipeline pipelines tests bench
	$(BIN)/ruff format --check corpus_pipeline pipelines tests bench
	$(BIN)/mypy corpus_pipeline pipelines
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format corpus_pipeline pipelines tests bench
	$(BIN)/ruff check --fix corpus_pipeline pipelines tests bench

# Test files run in parallel (one file per process: module fixtures are built once), at most 4.
# Budget: pytest within 3 minutes on 2 cores. Beam runs that are not about worker processes
# run in the test process (IN_PROCESS in tests/e2e/conftest.py); the slowest tests are
# printed at the end (--durations in pyproject.toml).
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
# --no-loadscope-reorder: pytest-xdist hands out files in collection order, longest first
# (SLOW_FIRST in tests/conftest.py), instead of by number of tests, which started the longest
# files last and left one worker idle at the end. PYTHONDONTWRITEBYTECODE cleared: pytest
# keeps its assertion-rewritten test modules in __pycache__; without them every worker
# rewrites all ~200 test modules again at each run (~5 s of CPU per worker).
PYTEST_PARALLEL = PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(TEST_JOBS) \
	--dist loadfile --no-loadscope-reorder

test: lint $(TRAIN_STAMP)
	$(PYTEST_PARALLEL)

# The bundled Wikipedia excerpt + book through the whole pipeline, every format, packed and
# unpacked, then verify and a short training run.
demo: $(TRAIN_STAMP)
	rm -rf $(DEMO_OUT)
	$(CP) run --input $(SAMPLES)/wiki/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2 \
	    --books $(SAMPLES)/books --output $(DEMO_OUT) --preset phase1 --format all --pack \
	    --dupe-factor 5 --workers $(WORKERS)
	$(CP) verify $(DEMO_OUT)/unpacked
	$(CP) verify $(DEMO_OUT)/packed
	$(CP) inspect $(DEMO_OUT)/unpacked --format hdf5 --show 1
	$(BIN)/python -m corpus_pipeline.train --data $(DEMO_OUT)/packed --steps 40 --preset tiny --threads 1 --log-every 10
	@echo
	@echo "demo output:"
	@echo "  documents       $(DEMO_OUT)/docs"
	@echo "  unpacked shards $(DEMO_OUT)/unpacked/{hdf5,tfrecord,mmap}"
	@echo "  packed shards   $(DEMO_OUT)/packed/{hdf5,tfrecord,mmap}"
	@echo "  report          $(DEMO_OUT)/unpacked/report.png"

# The latest (or DATE=YYYYMMDD) dump, verified, then the whole pipeline.
wiki: $(STAMP)
ifeq ($(WIKI_DUMP),)
	$(CP) download --dest $(DUMPS) --lang $(LANG_) --date $(DATE) --kind pages-articles-multistream
	$(CP) run --input $(DUMPS)/$(LANG_)wiki-$(DATE)-pages-articles-multistream.xml.bz2 \
	    $(if $(BOOKS),--books $(BOOKS)) --output $(OUT) $(RUN_FLAGS)
else ifneq ($(filter http://% https://%,$(WIKI_DUMP)),)
	$(CP) download --dest $(DUMPS) --url $(WIKI_DUMP) $(if $(WIKI_SHA1),--sha1 $(WIKI_SHA1))
	$(CP) run --input $(DUMPS)/$(notdir $(WIKI_DUMP)) $(if $(BOOKS),--books $(BOOKS)) \
	    --output $(OUT) $(RUN_FLAGS)
else
	$(CP) run --input $(WIKI_DUMP) $(if $(BOOKS),--books $(BOOKS)) --output $(OUT) $(RUN_FLAGS)
endif
	$(CP) verify $(OUT)/unpacked
	$(if $(filter 1,$(PACK)),$(CP) verify $(OUT)/packed)
	$(if $(REPORT_FORMAT),$(CP) inspect $(OUT)/unpacked --format $(REPORT_FORMAT) --show 1)

# A folder of books alone (default: the bundled one).
books: $(STAMP)
	$(CP) run --books $(or $(BOOKS),$(SAMPLES)/books) --output $(or $(filter-out out/wiki-$(SEQ),$(OUT)),out/books-$(SEQ)) \
	    --name books $(RUN_FLAGS)

# The longer fault runs (more kill/cut iterations, bigger fuzz budgets).
soak: $(TRAIN_STAMP)
	$(PYTEST_PARALLEL) -m soak tests

bench: $(TRAIN_STAMP)
	@for b in bench/*.py; do case $$b in */_*) continue;; esac; echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf out .bench .pytest_cache .mypy_cache .ruff_cache
