"""cocotb regressions of the emitted Verilog against the golden model, on Verilator or Icarus.

Each configuration is built once per simulator (cached in build/sim, shared by xdist workers);
its planned cases run in shards, each shard one simulation. ``SIM=icarus`` (``make sim
SIM=icarus``) runs every configuration on Icarus Verilog instead of Verilator; with the default
``SIM=verilator`` the ``tiny`` configuration also runs its whole plan on Icarus (the second,
4-state simulator), skipped with a reason when ``iverilog`` is not installed. ``UPE_SEED``
replays a run; ``WAVES=1`` dumps an FST per shard. Every shard records the path of its
functional coverage (``coverage.json``), merged at the end of the session (tests/conftest.py).
"""

import os

import pytest

from verif.launch import run_cases
from verif.regress import REGRESSION_CONFIGS, SHARDS, base_seed, materialize, shard_cases
from verif.toolchain import BUILD, build_model, default_sim, simulator_missing

pytestmark = pytest.mark.sim

SIM = default_sim()
#: Configurations that also run on Icarus when the main simulator is Verilator.
SECOND_SIM = {"icarus": ("tiny",)} if SIM == "verilator" else {}

SHARD_IDS = [(name, s, SIM) for name in REGRESSION_CONFIGS for s in range(SHARDS[name])]
SHARD_IDS += [(name, s, sim) for sim, names in SECOND_SIM.items() for name in names
              for s in range(SHARDS[name])]


def _id(name: str, shard: int, sim: str) -> str:
    return f"{name}-{shard}" if sim == "verilator" else f"{name}-{sim}-{shard}"


@pytest.mark.parametrize("cfg_name, shard, sim", SHARD_IDS, ids=[_id(*i) for i in SHARD_IDS])
def test_regression(cfg_name, shard, sim, record_property):
    why = simulator_missing(sim)
    if why:
        pytest.skip(f"{sim}: {why}")
    cfg = REGRESSION_CONFIGS[cfg_name]
    waves = os.environ.get("WAVES", "") not in ("", "0")
    seed = base_seed()
    print(f"UPE_SEED={seed} (replay: UPE_SEED={seed} make sim)")
    model = build_model(cfg, sim=sim, waves=waves)
    cases = [materialize(cfg, c, seed) for c in shard_cases(cfg_name, shard)]
    workdir = BUILD / "sim" / "runs" / _id(cfg_name, shard, sim)
    coverage = workdir / "coverage.json"
    coverage.unlink(missing_ok=True)
    try:
        report = run_cases(model, cases, workdir=workdir, seed=seed, waves=waves)
    finally:
        if coverage.exists():
            record_property("coverage_json", str(coverage))
    assert len(report["cases"]) == len(cases)
    assert all(c.get("checked") for c in report["cases"])
