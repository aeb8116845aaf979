# Two entry points for a fresh clone:
#   make demo   set up, export a model and deblur the bundled example
#   make test   set up and run the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first and pinned: an open range would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: setup test demo clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

test: setup
	$(BIN)/python -m pytest -n 2 -q

demo: setup
	$(BIN)/python -m deblur.runtime.demo runs/demo

clean:
	rm -rf $(VENV) runs build *.egg-info
