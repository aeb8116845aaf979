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

# With a shipped default model, the demo deblurs the bundled real camera-shake photo with it.
# Without one, it runs the whole pipeline in a minute: train a tiny model on the bundled
# photos, export it, deblur with it (a pipeline check, not a quality demo).
DEMO ?= runs/demo
demo: setup
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	@if [ ! -f runtime/models/default.onnx ]; then \
	  $(BIN)/deblur-train --data runtime/assets --out $(DEMO)/train --ngf 8 --n-blocks 2 --crop 128 \
	    --batch-size 2 --steps 40 --content l1 --adv-weight 0 --lr 1e-3 --workers 0 --val-every 40 && \
	  $(BIN)/deblur-export $(DEMO)/train/checkpoints/latest.pt $(DEMO)/model.onnx; fi
	$(BIN)/deblur-run runtime/assets/clock_motion.png -o $(DEMO)/clock_motion_deblurred.png --compare \
	  $(if $(wildcard runtime/models/default.onnx),,--model $(DEMO)/model.onnx)
	@echo "look at $(DEMO)/clock_motion_deblurred_compare.png (input | output)"

clean:
	rm -rf $(VENV) runs build *.egg-info
