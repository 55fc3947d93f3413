# perceptual_ext — set-up, tests, demo, benchmarks and the CUDA compile/link check.
#   make demo        install (first time) and run the demo
#   make install     the venv, the package (editable) and its compiled extension
#   V=1              show pip's and the compiler's output (otherwise it goes to build/*.log and
#                    only its last lines are printed, when a step fails)
#   make test        install (first time), build, pytest, then the C++ tests (CMake + ctest)
#   make bench       CPU benchmarks -> benchmarks/results/*.json and a ratio table
#   make cuda-check  build every .cu against the CUDA torch, import on CPU, run the CPU tests
#   make cuda-build  the compile/link and import part of cuda-check alone (incremental)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(abspath $(VENV))/bin/python
CUDA_VENV ?= .venv-cuda
CUDA_PY := $(abspath $(CUDA_VENV))/bin/python
TORCH_CPU ?= torch==2.13.0
TORCH_CUDA ?= torch==2.14.1
JOBS ?= 2
# nvcc on PATH may be a wrapper script; torch would guess the toolkit root from its location.
# Take the folder the wrapper execs instead (or an explicit CUDA_HOME).
CUDA_HOME ?= $(shell n=$$(command -v nvcc 2>/dev/null); [ -n "$$n" ] && { t=$$(sed -n 's|^exec \(.*\)/bin/nvcc.*|\1|p' "$$n"); [ -n "$$t" ] && echo "$$t" || dirname "$$(dirname "$$(readlink -f "$$n")")"; })
export CUDA_HOME
export MAX_JOBS := $(JOBS)
STAMP := $(VENV)/.installed
BUILT := build/.extension-built
SOURCES := $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.h csrc/cuda/*.cu)
V ?= 0
# $(call logged,LOG,COMMAND): run COMMAND with its output appended to LOG, printing LOG's tail if it
# fails (V=1: the output goes to the screen instead).
logged = mkdir -p build; if [ "$(V)" = 1 ]; then $(2); else $(2) >> $(1) 2>&1 || { \
  tail -n 40 $(1); echo "*** failed: the last lines of $(1) are above (make V=1 shows everything)"; exit 1; }; fi
PIP_QUIET := $(if $(filter 1,$(V)),,-q)
EXTRAS := .[test,bench]

.PHONY: install build test pytest ctest demo bench cuda-build cuda-check clean

install: build

# The package is installed editable without compiling (pip would compile in a throw-away folder);
# the one compile is the build step's, whose objects ninja keeps in build/ for incremental rebuilds.
$(STAMP): setup.py pyproject.toml
	@rm -f build/install.log
	@test -x $(PY) || { echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing $(TORCH_CPU) and the build tools into $(VENV)$(if $(filter 1,$(V)),, (log: build/install.log))"
	@$(call logged,build/install.log,$(PY) -m pip install $(PIP_QUIET) $(TORCH_CPU) 'setuptools>=77' wheel ninja pybind11 numpy cmake)
	@echo "installing perceptual_ext (editable, extras test and bench)"
	@$(call logged,build/install.log,env PERCEPTUAL_EXT_NO_EXTENSION=1 $(PY) -m pip install $(PIP_QUIET) --no-build-isolation -e '$(EXTRAS)')
	@touch $(STAMP)

# Compile the extension in place: the first time, or when a C++/CUDA source or setup.py changed
# (--force: ninja still recompiles only the changed files, headers included).
build: $(BUILT)

$(BUILT): $(STAMP) $(SOURCES) setup.py
	@rm -f build/build.log
	@echo "compiling perceptual_ext._C with $(JOBS) job(s) ($(if $(filter 1,$(V)),,log: build/build.log; )a few minutes the first time)"
	@start=$$(date +%s); $(call logged,build/build.log,$(PY) setup.py build_ext --inplace --force); \
	  echo "compiled in $$(( $$(date +%s) - start )) s"
	@touch $(BUILT)

pytest: build
	$(PY) -m pytest

ctest: $(STAMP)
	mkdir -p build
	$(abspath $(VENV))/bin/cmake -S . -B build/cmake -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" > build/cmake.log 2>&1 || { cat build/cmake.log; exit 1; }
	$(abspath $(VENV))/bin/cmake --build build/cmake -j$(JOBS) >> build/cmake.log 2>&1 || { tail -50 build/cmake.log; exit 1; }
	cd build/cmake && $(abspath $(VENV))/bin/ctest --output-on-failure

test: pytest ctest

demo: build
	$(PY) scripts/demo.py

bench: build
	d=$$(date +%Y%m%d) && $(PY) -m pytest benchmarks --benchmark-only -q \
	  --benchmark-json=benchmarks/results/cpu-$$d.json && \
	$(PY) benchmarks/report.py benchmarks/results/cpu-$$d.json --plots docs/bench

# A copy of the tree built with PERCEPTUAL_EXT_CUDA=1 against the CUDA torch, exactly as on a GPU
# machine (build_ext --inplace), then imported and tested on this CPU-only machine.
# cuda-build: the compile/link and import part alone. Incremental: the copy keeps the sources'
# times and build/cuda-check/build (ninja's objects) is kept, so only changed files recompile.
cuda-build:
	test -x $(CUDA_PY) || $(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_PY) -c "import torch, ninja, pybind11" 2>/dev/null || \
	  $(CUDA_PY) -m pip install -q $(TORCH_CUDA) setuptools wheel ninja pybind11 numpy pytest pillow tqdm opencv-python-headless scikit-image
	rm -rf build/cuda-check/csrc build/cuda-check/perceptual_ext build/cuda-check/tests && mkdir -p build/cuda-check
	git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -cf - | tar -xf - -C build/cuda-check
	@test -n "$(CUDA_HOME)" || { echo "cuda-check: nvcc not found; set CUDA_HOME"; exit 1; }
	cd build/cuda-check && PERCEPTUAL_EXT_CUDA=1 TORCH_CUDA_ARCH_LIST="$${TORCH_CUDA_ARCH_LIST:-9.0}" \
	  $(CUDA_PY) setup.py -q build_ext --inplace
	cd build/cuda-check && $(CUDA_PY) -c "import perceptual_ext as pe; i = pe.build_info(); print(i); assert i['cuda_compiled'], 'CUDA kernels missing'"

cuda-check:
	rm -rf build/cuda-check
	$(MAKE) cuda-build
	cd build/cuda-check && $(CUDA_PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf build perceptual_ext/_C*.so *.egg-info

# ------------------------------------------------------------------------------ lint and GPU check
.PHONY: lint gpu-check
LINT_TOOLS := ruff==0.14.* clang-format==21.*
CXX_SOURCES = $(shell git ls-files 'csrc/*.cpp' 'csrc/*.h' 'csrc/*.cu' 'csrc/*/*.cpp' 'csrc/*/*.h' 'csrc/*/*.cu' 'tests/cpp/*.cpp' 'tests/cpp/*.h')

# ruff (pyproject.toml [tool.ruff]) over the Python, clang-format (.clang-format) over the C++/CUDA.
lint: $(STAMP)
	$(PY) -c "import ruff, clang_format" 2>/dev/null || $(PY) -m pip install -q $(LINT_TOOLS)
	$(abspath $(VENV))/bin/ruff check .
	$(abspath $(VENV))/bin/clang-format --dry-run -Werror $(CXX_SOURCES)

# On a machine with a GPU (torch with CUDA installed there, no network, no pip -e): build in place for
# the device's architecture, run the whole suite (every device-parametrized test runs on CUDA too), run
# the CUDA benchmarks into $(GPU_RESULTS)/gpu-<date>.json and print the report. Under 8 minutes on an H100.
# A failing test does not cost the loan its benchmarks: the suite's status is kept and fails the target at the end.
GPU_PY ?= python3
GPU_RESULTS ?= benchmarks/results
gpu-check:
	@$(GPU_PY) -c "import torch; assert torch.cuda.is_available(), 'gpu-check needs a CUDA device'; print(torch.__version__, torch.cuda.get_device_name())"
	mkdir -p build $(GPU_RESULTS)
	export TORCH_CUDA_ARCH_LIST="$${TORCH_CUDA_ARCH_LIST:-$$($(GPU_PY) -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')}"; \
	  PERCEPTUAL_EXT_CUDA=1 MAX_JOBS=$$(nproc) $(GPU_PY) setup.py -q build_ext --inplace > build/gpu-build.log 2>&1 \
	  || { tail -60 build/gpu-build.log; exit 1; }
	PYTHONPATH=$(CURDIR) $(GPU_PY) -c "import perceptual_ext as pe; i = pe.build_info(); print(i); assert i['cuda_compiled']"
	PYTHONPATH=$(CURDIR) $(GPU_PY) -m pytest -q -rf -p no:cacheprovider \
	  --junitxml=$(GPU_RESULTS)/gpu-tests-$$(date +%Y%m%d).xml; echo $$? > build/gpu-pytest.rc
	PYTHONPATH=$(CURDIR) $(GPU_PY) -m pytest benchmarks --benchmark-only -q -p no:cacheprovider -k cuda \
	  --benchmark-json=$(GPU_RESULTS)/gpu-$$(date +%Y%m%d).json
	PYTHONPATH=$(CURDIR) $(GPU_PY) benchmarks/report.py $(GPU_RESULTS)/gpu-$$(date +%Y%m%d).json
	@rc=$$(cat build/gpu-pytest.rc); [ "$$rc" = 0 ] || { echo "*** the test suite failed on the GPU (pytest exit $$rc; \
	  $(GPU_RESULTS)/gpu-tests-$$(date +%Y%m%d).xml); the benchmarks above ran anyway"; exit 1; }
