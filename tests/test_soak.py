"""verif.soak on the native harness, on Dask (verif.cluster) and serially: the same results."""

import numpy as np
import pytest

from gen.presets import preset
from verif import soak
from verif.cluster import run_points

pytestmark = pytest.mark.sim

TINY = preset("tiny")
MODES = [m for m in TINY.modes if m.name in ("int8-2:4-none", "ternary-1:4-int",
                                             "fp4_e2m1-dense-pow2-mxact")]


def _fails_on_two(i: int) -> int:
    if i == 2:
        raise ValueError("point two is bad")
    return i * i


@pytest.mark.parametrize("scheduler", ["serial", None])
def test_run_points_reports_each_failure(scheduler):
    res = run_points(_fails_on_two, [(i,) for i in range(5)], scheduler=scheduler, workers=2,
                     processes=False, label="t")
    assert [r.index for r in res] == list(range(5))
    assert [r.value for r in res if r.error is None] == [0, 1, 9, 16]
    assert res[2].error == "ValueError: point two is bad"


def test_soak_on_dask_equals_serial(tmp_path, monkeypatch):
    monkeypatch.setitem(soak.JOB_MACS, "native", 20_000)  # several jobs per mode
    summaries = {}
    for scheduler in ("serial", None):
        out = tmp_path / str(scheduler)
        jobs = soak.plan_jobs(TINY, MODES, 5e4, 1234, out, "verilator", "native")
        assert len(jobs) > len(MODES)
        results = run_points(soak.run_job, jobs, scheduler=scheduler, workers=2,
                             processes=False, label="soak")
        totals, per_mode, failures = soak.summarize(jobs, results)
        assert not failures and totals["mismatches"] == 0
        assert set(per_mode) == {m.name for m in MODES}
        assert all(v["macs"] >= 5e4 for v in per_mode.values())
        summaries[scheduler] = (totals, per_mode)
    assert summaries["serial"] == summaries[None]


def test_soak_counts_a_mismatch(tmp_path, monkeypatch):
    """A job whose golden is off must be counted, not pass: corrupt one expected output."""
    jobs = soak.plan_jobs(TINY, MODES[:1], 1e4, 7, tmp_path, "verilator", "native")
    real = soak._materialize

    def corrupt(cfg, mode, spec, name):
        case = real(cfg, mode, spec, name)
        y, err = case["golden"]
        y = np.array(y, copy=True)
        y.flat[0] += 1
        case["golden"] = (y, err)
        return case

    monkeypatch.setattr(soak, "_materialize", corrupt)
    out = soak.run_job(*jobs[0])
    assert out["mismatches"] >= 1 and out["bad_cases"]


def test_run_points_on_a_scheduler_address(monkeypatch):
    """The address path (``--scheduler`` / UPE_DASK_SCHEDULER) against a running scheduler."""
    from dask.distributed import LocalCluster

    from verif.cluster import SCHEDULER_ENV, scheduler_from

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        monkeypatch.setenv(SCHEDULER_ENV, cluster.scheduler_address)
        address = scheduler_from(None)
        assert address == cluster.scheduler_address
        res = run_points(_fails_on_two, [(i,) for i in (3, 4)], scheduler=address, label="t")
    assert [r.value for r in res] == [9, 16]
