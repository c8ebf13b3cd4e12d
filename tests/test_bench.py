"""`make bench` and `make dse` without synthesis: a small bench on the RTL, the DSE bookkeeping."""

from __future__ import annotations

import json

import pytest

from flows import bench, dse
from hw.config import ConfigError


@pytest.mark.sim
def test_bench_tiny_matches_model_and_golden(tmp_path):
    """Two modes on tiny: bit-exact, cycles equal to the analytic model, speedup measured."""
    status = bench.main(["--preset", "tiny", "--k", "256", "--modes", "dense int8,2:4 int4",
                         "--device", "ecp5-85k", "--compare-tiles", "2", "-o", str(tmp_path)])
    assert status == 0
    rep = json.loads((tmp_path / "tiny.json").read_text())
    eng = rep["engines"]  # the native vs cocotb comparison of the same GEMM
    assert eng["same_cycles"] and eng["same_results"]
    assert eng["native"]["matches_golden"] and eng["cocotb"]["matches_golden"]
    assert eng["native"]["cycles_per_second"] > 0 and eng["speedup"] > 0
    rows = {r["label"]: r for r in rep["rows"]}
    assert set(rows) == {"dense int8", "2:4 int4"}
    for r in rows.values():
        assert r["matches_golden"]
        assert r["cycles"] == r["model_cycles"]
        assert r["ideal_cycles"] <= r["cycles"]
    assert rows["dense int8"]["speedup_vs_dense_int8"] == 1.0
    assert rows["2:4 int4"]["speedup_vs_dense_int8"] > 3.0  # 4x the lanes, some fill/drain
    md = (tmp_path / "tiny.md").read_text()
    assert "2:4 int4" in md and "Decode" in md and "Engines, measured in this run" in md


def test_bench_refuses_unknown_mode(capsys):
    assert bench.main(["--preset", "tiny", "--modes", "int9"]) == 2
    assert "int9" in capsys.readouterr().err


def test_bench_refuses_k_beyond_k_max(capsys):
    assert bench.main(["--preset", "tiny", "--k", "8192"]) == 2
    assert "k_max" in capsys.readouterr().err


def test_dse_grids_are_valid_configurations():
    for name, points in dse.GRIDS.items():
        tags = [p.tag for p in points]
        assert len(set(tags)) == len(tags), name
        for p in points:
            cfg = p.config()
            assert cfg.rows == p.rows and cfg.window == p.window


def test_dse_grid_file_errors(tmp_path):
    bad = tmp_path / "grid.json"
    bad.write_text(json.dumps({"arrays": [[2, 2]], "points": [[4, 4, "int7"]]}))
    with pytest.raises(ConfigError, match="int7"):
        dse.load_grid(str(bad))
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="arrays"):
        dse.load_grid(str(bad))
    with pytest.raises(ConfigError, match="not a grid name"):
        dse.load_grid(str(tmp_path / "missing.json"))


def test_dse_pareto_front():
    pts = [(10, 1.0), (20, 3.0), (15, 0.5), (30, 3.0), (40, 5.0)]
    assert dse.pareto(pts) == [0, 1, 4]


def test_dse_throughput_rows_from_a_synthesis_result():
    point = dse.Point(2, 2, 4, 16, "int4_2:4")
    cfg = point.config()
    synth = {"latency": {"drain_delay": 10, "first_result": 19}, "fmax_mhz": 50.0}
    rows = {r["mode"]: r for r in dse.throughput_rows(point, cfg, synth, 64, 64, 1024)}
    assert set(rows) == {"int8/dense", "int8/2:4", "int4/dense", "int4/2:4"}
    assert rows["int4/2:4"]["step"] == 4 * rows["int8/dense"]["step"]
    r = rows["int8/dense"]
    assert r["gops"] == pytest.approx(2 * r["macs_per_cycle"] * 50.0 / 1e3, rel=1e-3)


def test_dse_failed_point_is_reported_not_fatal(tmp_path, monkeypatch):
    from flows import synth

    def boom(*args, **kwargs):
        raise synth.SynthError("nextpnr: design does not fit", kind="fit")

    monkeypatch.setattr(synth, "synthesize", boom)
    rows = dse.run_point(dse.Point(2, 2, 4, 4, "int8"), "ecp5-25k", tmp_path, 100.0, False,
                         (8, 8, 64))
    assert rows == [{"tag": "int8-2x2-s4w4", "fmt_set": "int8", "rows": 2, "cols": 2,
                     "slots": 4, "window": 4, "status": "no fit",
                     "error": "nextpnr: design does not fit"}]
