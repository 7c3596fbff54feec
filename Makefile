# sales-stream: every target creates/uses the local virtualenv .venv (Python 3.11).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
NEED_PYTHON := 3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Python .venv is (or will be) built with, its version, and the one line said when it is not 3.11
# (expanded only when .venv has to be built, so `make clean` works with any Python).
BUILD_PYTHON = $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
BUILD_VERSION = $(if $(BUILD_PYTHON),$(shell $(BUILD_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
WRONG_PYTHON = the pinned requirements need Python $(NEED_PYTHON), but $(if $(BUILD_PYTHON),$(BUILD_PYTHON) is $(if $(BUILD_VERSION),Python $(BUILD_VERSION),not a working Python),no python3.11 or python3 is on PATH): install 3.11 (pyenv install 3.11, python.org, sudo apt install python3.11 python3.11-venv, brew install python@3.11) and retry, or pass PYTHON=/path/to/python3.11

.PHONY: run test lab lint format up down status bench clean notebooks

$(STAMP): requirements.txt pyproject.toml
	$(if $(filter $(NEED_PYTHON),$(BUILD_VERSION)),,$(error $(WRONG_PYTHON)))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $(STAMP)

## run: the whole pipeline on the embedded services; leaves out/, executed notebooks, figures
run: $(STAMP)
	$(BIN)/python -m sales_stream run

## notebooks: refresh the committed notebooks from the executed copies of `make run`
## (out/notebooks/), without widget state or machine paths, each under 2 MB
notebooks: run
	$(BIN)/python -m sales_stream.notebooks out/notebooks .

## test: the test suite (real embedded Kafka, MongoDB and Hyper; executes the notebooks),
## whole files spread over two workers, each with its own embedded servers
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

## lab: JupyterLab on the notebooks; it owns the embedded services its kernels start (they stop with it)
lab: $(STAMP)
	$(BIN)/jupyter lab

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

up down status: $(STAMP)
	$(BIN)/python -m sales_stream $@

bench: $(STAMP)
	for script in $(filter-out bench/common.py,$(wildcard bench/*.py)); do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .sales_stream out
