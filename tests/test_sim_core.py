"""cocotb regressions of the emitted Verilog under Verilator, against the golden model.

Each configuration is built once (cached in build/sim, shared by xdist workers); its planned
cases run in shards, each shard one simulation. ``UPE_SEED`` replays a run; ``WAVES=1`` dumps
an FST per shard.
"""

import os

import pytest

from verif.launch import run_cases
from verif.regress import REGRESSION_CONFIGS, SHARDS, base_seed, materialize, shard_cases
from verif.toolchain import BUILD, build_model

pytestmark = pytest.mark.sim

SHARD_IDS = [(name, s) for name in REGRESSION_CONFIGS for s in range(SHARDS[name])]


@pytest.mark.parametrize("cfg_name, shard", SHARD_IDS, ids=[f"{n}-{s}" for n, s in SHARD_IDS])
def test_regression(cfg_name, shard):
    cfg = REGRESSION_CONFIGS[cfg_name]
    waves = os.environ.get("WAVES", "") not in ("", "0")
    seed = base_seed()
    print(f"UPE_SEED={seed} (replay: UPE_SEED={seed} make sim)")
    model = build_model(cfg, waves=waves)
    cases = [materialize(cfg, c, seed) for c in shard_cases(cfg_name, shard)]
    workdir = BUILD / "sim" / "runs" / f"{cfg_name}-{shard}"
    report = run_cases(model, cases, workdir=workdir, seed=seed, waves=waves)
    assert len(report["cases"]) == len(cases)
    assert all(c.get("checked") for c in report["cases"])
