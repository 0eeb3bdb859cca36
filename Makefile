# modelport: local runs of the jobs and the formats module. `make help` lists the targets.
# Every target that runs code first makes sure .venv holds what it needs (`make setup`).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
# Spark's Python workers run the venv's python, not whatever python3 is first on the PATH.
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export SPARK_LOCAL_IP ?= 127.0.0.1

ROWS    ?= 1000000
DATA    ?= data/penguins
BUNDLE  ?= bundles/penguins
OUTPUT  ?= out/scores
MODEL   ?= rf
CLUSTER ?= .cluster
COMPARE_ROWS ?= 200000

# pip warns about each of this machine's configured local package folders that does not exist.
PIP := $(PY) -m pip -q --disable-pip-version-check

.PHONY: help setup java demo test lint data export parity score compare compare-local jvm jvm-archive bench \
  providers view \
  cluster-up cluster-down cluster-status package submit

help: ## this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install modelport with every extra (first run only)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory java
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "modelport needs Python >= 3.11 (found $$($(PYTHON) --version))" >&2; exit 2; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@echo "==> installing modelport and its extras into $(VENV)" >&2
	@$(PIP) install --upgrade pip 2> >(grep -v '^WARNING: Location' >&2)
	@# torch 2.13.0 is a local CPU build on these machines; a range that admits it installs nothing
	@# more, while an unpinned torch would pull a multi-gigabyte CUDA build.
	@$(PIP) install torch==2.13.0 2> >(grep -v '^WARNING: Location' >&2) \
	  || echo "==> torch 2.13.0 not available here; pip chooses a torch build" >&2
	@$(PIP) install -e '.[all,test]' 2> >(grep -v '^WARNING: Location' >&2)
	@rm -f $(VENV)/.installed-* && touch $@
	@$(MAKE) --no-print-directory jvm-archive \
	  || echo "==> no JVM class archive (make jvm-archive): Spark starts as usual" >&2

java: ## check for Java >= 17 (sklearn2pmml, pypmml, JPMML and Spark need it)
	@v=$$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/{print $$2}'); \
	if [ -z "$$v" ]; then \
	  echo "error: Java not found; install Java 17 or newer (Debian/Ubuntu: apt-get install -y openjdk-17-jdk-headless; macOS: brew install openjdk@17) and put java on the PATH" >&2; exit 2; \
	elif [ "$${v%%.*}" -lt 17 ] 2>/dev/null; then \
	  echo "error: Java $$v found, modelport needs 17 or newer (Debian/Ubuntu: apt-get install -y openjdk-17-jdk-headless)" >&2; exit 2; \
	fi

demo: setup ## the whole story on the embedded penguins data: data -> train -> bundle -> parity
	$(PY) -m jobs.demo --rows $(ROWS)

test: setup ## lint, type-check and run the whole test suite
	$(VENV)/bin/ruff check formats jobs tests
	$(VENV)/bin/mypy formats jobs
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup ## ruff and mypy --strict
	$(VENV)/bin/ruff check formats jobs tests
	$(VENV)/bin/mypy formats jobs

data: setup ## the embedded dataset scaled to ROWS rows of Parquet in DATA
	$(PY) -m jobs.datagen --rows $(ROWS) --output $(DATA)

export: setup ## train the default pipeline (MODEL=rf|logreg|hgb|xgboost|lightgbm) into BUNDLE
	$(PY) -m jobs.export --output $(BUNDLE) --model $(MODEL)

parity: setup ## every format and engine of BUNDLE against the original
	$(PY) -m formats parity $(BUNDLE)

score: setup ## the Spark job on local[*]: score DATA with BUNDLE into OUTPUT
	$(VENV)/bin/spark-submit --properties-file conf/spark/local.conf jobs/score.py \
	  --conf conf/local.toml --bundle $(BUNDLE) --input $(DATA) --output $(OUTPUT) \
	  --set output.mode=overwrite

# A Spark standalone cluster on 127.0.0.1 (pid files, logs, work dirs in CLUSTER); see README.
cluster-up: setup ## start a standalone master and 2 workers (1 core, 1 GB each) on 127.0.0.1
	$(PY) -m jobs.cluster up --dir $(CLUSTER)

cluster-down: ## stop the cluster and everything it started
	$(PY) -m jobs.cluster down --dir $(CLUSTER)

cluster-status: ## the cluster's master URL, ALIVE workers and running apps
	$(PY) -m jobs.cluster status --dir $(CLUSTER)

package: setup ## dist/modelport-code.zip (--py-files) and dist/env.tar.gz (--archives)
	$(PY) -m jobs.cluster package --dist dist

submit: package | $(DATA) $(BUNDLE) ## the Spark job on the cluster (make cluster-up first): DATA with BUNDLE into OUTPUT
	$(PY) -m jobs.cluster submit --dir $(CLUSTER) --dist dist -- \
	  --bundle $(BUNDLE) --input $(DATA) --output $(OUTPUT)

# The comparison needs the data and the bundle: made here when absent (order-only: an existing
# one is used as it is). COMPARE_ROWS rows are scored on Spark, so that the whole report,
# in-process half included, stays under 5 minutes on 2 cores.
$(DATA):
	@$(MAKE) --no-print-directory data DATA=$(DATA)

$(BUNDLE):
	@$(MAKE) --no-print-directory export BUNDLE=$(BUNDLE)

compare: setup | $(DATA) $(BUNDLE) ## the format comparison, in-process and on Spark, into out/compare
	$(VENV)/bin/spark-submit --properties-file conf/spark/compare.conf jobs/compare.py \
	  --conf conf/local.toml --bundle $(BUNDLE) --input $(DATA) --out out/compare \
	  --rows $(COMPARE_ROWS)

compare-local: setup | $(DATA) $(BUNDLE) ## the in-process half alone (python -m formats compare)
	$(PY) -m formats compare $(BUNDLE) --data $(DATA) --out out/compare

# The driver JVM's class archive (class data sharing): one run of the job on a small input
# records the classes it loads; conf/spark/local.conf maps them at every later start.
JSA := .cache/jvm/spark-driver.jsa
TRAIN := .cache/jvm/train
jvm-archive: setup ## the driver JVM's class archive (make setup builds it): a cold run starts sooner
	@echo "==> building $(JSA) (one run of the job on 20,000 rows)" >&2
	@rm -rf $(TRAIN) && mkdir -p $(TRAIN)
	@$(PY) -m jobs.datagen --rows 20000 --output $(TRAIN)/data > /dev/null
	@$(PY) -m jobs.export --output $(TRAIN)/bundle --formats pickle,onnx > /dev/null
	@$(VENV)/bin/spark-submit --properties-file conf/spark/local.conf \
	  --conf "spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=conf/spark/log4j2.properties -XX:ArchiveClassesAtExit=$(JSA) -Xlog:cds=off -Xlog:cds+dynamic=off" \
	  --conf spark.ui.showConsoleProgress=false jobs/score.py --conf conf/local.toml \
	  --bundle $(TRAIN)/bundle --input $(TRAIN)/data --output $(TRAIN)/out > /dev/null
	@rm -rf $(TRAIN)

jvm: setup ## compile the PMML Java UDF (jobs/java) into .cache/jvm (compare does it when needed)
	$(PY) -m jobs.comparison.jvm

bench: setup ## the job against its peers: whole cold runs first, then in-session (docs/benchmarks.md)
	$(PY) -m jobs.bench --end-to-end --sizes 10000,$(ROWS),4000000 --masters 2,1p --repeats 3
	$(PY) -m jobs.bench --rows $(ROWS) --cores 1,2 --models rf,logreg --repeats 5 --marginal-rows 3000000 --tree-forms --scaling-pairs 2
	$(PY) -m jobs.bench --cluster --rows $(ROWS) --models rf --repeats 5 --scaling-pairs 2
	$(PY) -m jobs.bench --memory-check --rows 10000000 --cores 2

providers: setup ## ONNX Runtime's execution providers and which of them run here
	$(PY) -m formats providers

view: setup ## open BUNDLE's ONNX model in Netron on 127.0.0.1
	$(PY) -m formats view $(BUNDLE)/model.onnx
