# reprolib — one command per table; everything runs inside .venv.
#   make table4                    the main job: embedded world → backends → precompute → train → evaluate → table
#   make table4 PROFILE=full DATA=/path/to/datasets     the paper's settings on the real data
#   make test                      the test suite
SHELL := /bin/bash
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
TABLE ?= table4
KAGGLE_DATASETS ?=
SEED ?= 0
WORLD ?= $(WORK)/world

TABLES := table3 table4 table5 table6 table7 table8 figures figure3
PM_ARGS = -p profile $(PROFILE) -p work_dir $(WORK) -p wandb_mode $(WANDB) -p output_dir results/$@ \
	$(if $(DATA),-p data_root $(DATA)) $(if $(SEEDS),-y "seeds: [$(SEEDS)]") $(if $(MAX_TIME),-p max_time $(MAX_TIME)) \
	$(if $(EVAL_RES),-p eval_resolution $(EVAL_RES))

.PHONY: help setup test lint world demo report all lab kaggle-push kaggle-pull clean-venv smoke-full $(TABLES)

help:
	@echo "make setup            create .venv with the pinned stack (idempotent: a second call does no work)"
	@echo "make table4           Table 4 ablation on the embedded world (the README's main job)"
	@echo "make table3 … table8, make figures, make figure3   the other tables/figures"
	@echo "   PROFILE=demo|full  DATA=/datasets  SEEDS=0,1,2  WORK=data  WANDB=offline|online  MAX_TIME=00:08:30:00"
	@echo "   EVAL_RES=processed|benchmark  (benchmark: score at the evaluation sets' own size, e.g. 1024×2048)"
	@echo "make report           LaTeX report from results/ (needs latexmk)"
	@echo "make all              every table, then the report"
	@echo "make lab              JupyterLab with the project's kernel"
	@echo "make kaggle-push TABLE=table4 [KAGGLE_DATASETS=user/cityscapes,user/fishyscapes]; make kaggle-pull TABLE=table4"
	@echo "make demo             just the embedded world and its gallery"
	@echo "make smoke-full       paper-scale dry run on CPU (1024×2048 world, real DeepWV3Plus + CC-FPSE, width-1.0"
	@echo "                      VGG16 for a few steps): results/smoke-full/{smoke-full.csv,cost.json} + P100/T4 estimate"
	@echo "make test             the test suite"

# The stamp depends on the requirement files: a second call does no work.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
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

# Each table: Papermill runs the notebook headlessly into results/<name>/<name>.ipynb, saving after every
# cell so a crash keeps what ran; reruns reuse finished runs and resume unfinished ones.
$(TABLES): $(STAMP)
	@mkdir -p results/$@
	$(VENV)/bin/papermill notebooks/$@.ipynb results/$@/$@.ipynb --request-save-on-cell-execute \
		--log-output -k python3 $(PM_ARGS)

# Paper-scale dry run (profile `smoke`, < 30 min on 2 cores): every `full` stage at the real resolutions on a
# handful of images; per-stage wall time and peak RSS in results/smoke-full/cost.json, and the cost estimate.
smoke-full: $(STAMP)
	$(PY) -m reprolib.experiments.smoke --out results/smoke-full --work $(WORK)

report: $(STAMP)
	$(PY) -c "from reprolib.report import build_report; build_report('results', 'report')"
	@if command -v latexmk > /dev/null; then \
		cd report && latexmk -pdf -interaction=nonstopmode -halt-on-error main.tex > latexmk.log && \
		echo "report/main.pdf"; \
	else \
		echo "latexmk not found: install TeX Live, e.g. 'apt-get install texlive-latex-base texlive-latex-extra latexmk'"; \
		echo "(the generated .tex fragments are in report/generated/)"; exit 1; \
	fi

all: $(TABLES) report

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

kaggle-push: $(STAMP)
	$(PY) -m reprolib.kaggle push --table $(TABLE) --profile $(PROFILE) \
		$(if $(KAGGLE_DATASETS),--datasets $(KAGGLE_DATASETS))

kaggle-pull: $(STAMP)
	$(PY) -m reprolib.kaggle pull --table $(TABLE)

clean-venv:
	rm -rf $(VENV)
