# reprolib — one command per table; everything runs inside .venv. `make help` lists every target.
#   make table4                    the main job: embedded world → backends → precompute → train → evaluate → table
#   make table4 PROFILE=full DATA=/path/to/datasets     the paper's settings on the real data
#   make test                      the test suite
#
# The targets are a DAG over files (each rule names the file it makes; what reads it depends on that file):
#   .venv/.installed               ← requirements.txt pyproject.toml
#   results/<t>/<t>.csv            ← notebooks/<t>.ipynb              (| .venv: a reinstall keeps the results)
#   report/generated/profiles.tex  ← every results/<t>/<t>.csv (smoke-full too), reprolib/report/*.py  (LaTeX, figures)
#   report/main.pdf                ← report/main.tex report/generated/profiles.tex
# `make <t>` (and `make all`) always runs the table's notebook, which resumes unfinished runs and reuses finished
# ones; a CSV reached only as a prerequisite (`make report`) is made when missing or older than its notebook, or
# when its status.json says its last run was killed or crashed ("in_progress": the CSV holds part of the rows).
# A new table: add its name to TABLES (and its notebook to tools/make_notebooks.py).
SHELL := /bin/bash
# Python writes the bytecode of what it imports (uv does not compile the whole stack at install: tools/install.py),
# also where the environment asks it not to: else every process compiled torch again (12 s of imports, not 5)
unexport PYTHONDONTWRITEBYTECODE
PYTHON_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= demo
DATA ?=
SEEDS ?=
WORK ?= data
WANDB ?= offline
MAX_TIME ?=
EVAL_RES ?=
PRECISION ?=
REPORT_SELECTION ?=
ifneq ($(filter-out yes no,$(REPORT_SELECTION)),)
$(error REPORT_SELECTION must be yes or no, got '$(REPORT_SELECTION)')
endif
TABLE ?= table4
KAGGLE_DATASETS ?=
CKPT_DATASET ?=
CKPTS ?=
ACCELERATOR ?= NvidiaTeslaT4
SEED ?= 0
WORLD ?= $(WORK)/world

TABLES := table2 table3 table4 table5 table6 table7 table8 figures figure3
REPORT_TABLES ?= $(TABLES)
table_csv = $(foreach t,$(1),results/$(t)/$(t).csv)
# Papermill's arguments, expanded inside a table's rule: $(@D) is its results/<t> folder. -r passes the text as it
# is (-p would make WORK=2024 the number 2024 and DATA=None Python's None); the seeds are YAML, a list of numbers.
PM_ARGS = -r profile $(PROFILE) -r work_dir $(WORK) -r wandb_mode $(WANDB) -r output_dir $(@D) \
	$(if $(DATA),-r data_root $(DATA)) $(if $(SEEDS),-y "seeds: [$(SEEDS)]") $(if $(MAX_TIME),-r max_time $(MAX_TIME)) \
	$(if $(EVAL_RES),-r eval_resolution $(EVAL_RES)) $(if $(PRECISION),-r precision $(PRECISION)) \
	$(if $(filter no,$(REPORT_SELECTION)),-p report_selection False)
# Table 2 times single steps: it trains nothing, so seeds, time budgets, W&B and the evaluation size do not apply
PM_ARGS_table2 = -r profile $(PROFILE) -r work_dir $(WORK) -r output_dir $(@D) \
	$(if $(DATA),-r data_root $(DATA)) $(if $(PRECISION),-r precision $(PRECISION))
NOT_FOR_table2 = $(strip $(if $(SEEDS),SEEDS) $(if $(MAX_TIME),MAX_TIME) $(if $(EVAL_RES),EVAL_RES) \
	$(if $(REPORT_SELECTION),REPORT_SELECTION))

.PHONY: help setup test lint world demo report all lab kaggle-push kaggle-pull clean-venv smoke-full FORCE $(TABLES)
# a killed or interrupted run keeps the rows it finished (the notebook writes the CSV after every run)
.PRECIOUS: $(call table_csv,$(TABLES))

help:
	@echo "make setup            create .venv with the pinned stack (idempotent: a second call does no work)"
	@echo "make table4           Table 4 ablation on the embedded world (the README's main job) → results/table4/table4.csv"
	@echo "make <table>          any of: $(TABLES) → results/<table>/<table>.csv"
	@echo "make table2           computational requirements measured on this machine (beside the report's)"
	@echo "   PROFILE=demo|full  DATA=/datasets  SEEDS=0,1,2  WORK=data  WANDB=offline|online  MAX_TIME=00:08:30:00"
	@echo "   EVAL_RES=processed|benchmark  (benchmark: score at the evaluation sets' own size, e.g. 1024×2048)"
	@echo "   PRECISION=32-true|bf16-mixed|16-mixed  (training; fp32 unless asked, as the original)"
	@echo "   REPORT_SELECTION=yes|no  (no: leave out the <variant>@report_selection rows: in full, epochs - 11 more a run)"
	@echo "   each always runs its notebook: unfinished runs resume, finished ones are reused"
	@echo "make results/table4/table4.csv   the same, but only if the CSV is missing or older than its notebook"
	@echo "make report           LaTeX report (report/main.pdf, needs latexmk) from results/; first makes any table CSV"
	@echo "                      missing, older than its notebook or left by a killed run"
	@echo "                      [REPORT_TABLES=\"table4 table7\": depend on these tables only]"
	@echo "make all              every table (run or resumed), then the report"
	@echo "make lab              JupyterLab with the project's kernel"
	@echo "make kaggle-push TABLE=table4 [PROFILE=full DATA=you/synboost-data CKPT_DATASET=you/synboost-weights"
	@echo "   CKPTS=deepwv3plus=cityscapes_best.pth,... MAX_TIME=00:11:00:00 ACCELERATOR=NvidiaTeslaT4 WANDB=online"
	@echo "   PRECISION=16-mixed EVAL_RES=benchmark SEEDS=0,1,2 REPORT_SELECTION=no]"
	@echo "make kaggle-pull TABLE=table4   that kernel's results into results/table4/ (where make report reads; PARTIAL=yes: an unfinished table too;"
	@echo "   results of another profile than the local ones are refused: PROFILE=full takes full ones)"
	@echo "make world            the embedded world in WORLD=$(WORLD) (SEED=0)"
	@echo "make demo             just the embedded world and its gallery"
	@echo "make smoke-full       paper-scale dry run on CPU (1024×2048 world, real DeepWV3Plus + CC-FPSE, width-1.0"
	@echo "                      VGG16 for a few steps): results/smoke-full/{smoke-full.csv,cost.json} + P100/T4 estimate"
	@echo "make test             the test suite"
	@echo "make lint             ruff over reprolib, tests, benchmarks, tools"
	@echo "make clean-venv       delete .venv"
	@echo "make help             this list"

# The stamp depends on the requirement files: a second call does no work. tools/install.py installs with uv as pip
# is configured (same indexes and pins, ~5x faster here), and with pip where uv fails.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) tools/install.py -r requirements.txt
	$(PY) tools/install.py --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (reprolib)" > /dev/null
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check reprolib tests benchmarks tools

world: $(STAMP)
	$(PY) -m reprolib.world --out $(WORLD) --seed $(SEED)

demo: world
	@echo "gallery: $(WORLD)/gallery.png"

# Each table: Papermill runs the notebook headlessly into results/<t>/<t>.ipynb, saving after every cell so a
# crash keeps what ran (each save atomic: tools/run_notebook.py); the notebook writes results/<t>/<t>.csv. A table named on the command line (or by
# `make all`) depends on FORCE, so it always runs; reruns reuse finished runs and resume unfinished ones.
FORCED_TABLES := $(if $(filter all,$(MAKECMDGOALS)),$(TABLES),$(filter $(TABLES),$(MAKECMDGOALS)))
# A killed or crashed table keeps the rows it finished, but its status.json still says "in_progress": its CSV is
# out of date whatever its time, so the next `make report` resumes the table instead of reporting part of it.
interrupted = $(shell grep -qs '"in_progress": true' results/$(1)/status.json && echo yes)
define table_rule
$(call table_csv,$(1)): notebooks/$(1).ipynb $(if $(filter $(1),$(FORCED_TABLES))$(call interrupted,$(1)),FORCE) | $(STAMP)
	@mkdir -p $$(@D)
	$(if $(filter table2,$(1)),$$(if $$(NOT_FOR_table2),@echo "table2: $$(NOT_FOR_table2) not used (it times single steps)"))
	$$(PY) tools/run_notebook.py $$< $$(@D)/$(1).ipynb --request-save-on-cell-execute \
		--log-output -k python3 $$(if $$(filter table2,$(1)),$$(PM_ARGS_table2),$$(PM_ARGS))
$(1): $(call table_csv,$(1))
endef
$(foreach t,$(TABLES),$(eval $(call table_rule,$(t))))

# Paper-scale dry run (profile `smoke`, < 30 min on 2 cores): every `full` stage at the real resolutions on a
# handful of images; per-stage wall time and peak RSS in results/smoke-full/cost.json, and the cost estimate.
smoke-full: $(STAMP)
	$(PY) -m reprolib.experiments.smoke --out results/smoke-full --work $(WORK)

FORCE:

# The report's fragments are rebuilt when a table's CSV (written with its figures) or the report code changes.
report/generated/profiles.tex: $(call table_csv,$(REPORT_TABLES)) $(wildcard results/smoke-full/smoke-full.csv) $(wildcard reprolib/report/*.py) | $(STAMP)
	$(PY) -c "from reprolib.report import build_report; build_report('results', 'report')"

report/main.pdf: report/main.tex report/generated/profiles.tex
	@if command -v latexmk > /dev/null; then \
		cd report && latexmk -pdf -interaction=nonstopmode -halt-on-error main.tex > latexmk.log && \
		echo "report/main.pdf"; \
	else \
		echo "latexmk not found: install TeX Live, e.g. 'apt-get install texlive-latex-base texlive-latex-extra latexmk'"; \
		echo "(the generated .tex fragments are in report/generated/)"; exit 1; \
	fi

report: report/main.pdf

all: report

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# On Kaggle, DATA and the checkpoints are Kaggle datasets (owner/slug), mounted under /kaggle/input.
kaggle-push: $(STAMP)
	$(PY) -m reprolib.kaggle push --table $(TABLE) --profile $(PROFILE) --accelerator $(ACCELERATOR) \
		--wandb $(WANDB) $(if $(MAX_TIME),--max-time $(MAX_TIME)) $(if $(DATA),--data $(DATA)) \
		$(if $(CKPT_DATASET),--checkpoints-dataset $(CKPT_DATASET)) $(if $(CKPTS),--checkpoints $(CKPTS)) \
		$(if $(KAGGLE_DATASETS),--datasets $(KAGGLE_DATASETS)) $(if $(PRECISION),--precision $(PRECISION)) \
		$(if $(EVAL_RES),--eval-resolution $(EVAL_RES)) $(if $(SEEDS),--seeds $(SEEDS)) \
		$(if $(filter no,$(REPORT_SELECTION)),--no-report-selection)

kaggle-pull: $(STAMP)
	$(PY) -m reprolib.kaggle pull --table $(TABLE)$(if $(filter yes,$(PARTIAL)), --partial)$(if $(filter-out file default undefined,$(origin PROFILE)), --profile $(PROFILE))

clean-venv:
	rm -rf $(VENV)
