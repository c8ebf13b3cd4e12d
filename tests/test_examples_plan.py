"""examples.plan: the co-design planner on a small slice (one encoder layer, few sentences)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from examples.e2e import Choice, Encoder, load_sentences, split_sentences
from examples.plan import (
    Array,
    candidate_choices,
    measure,
    minimize,
    plan_document,
    plan_for,
    plan_layers,
    profile,
    read_plan,
    solve,
    write_section,
)
from tests.test_examples_e2e import model  # noqa: F401  (fixture)

CHOICES = [Choice("int8"), Choice("int4", group=128), Choice("int4", "2:4", group=128),
           Choice("ternary"), Choice("fp4_e2m1", scale_kind="pow2")]


def brute_force(f, g, limit):
    best = None
    for picks in itertools.product(*(range(f.shape[1]) for _ in range(f.shape[0]))):
        rows = np.arange(f.shape[0])
        if g[rows, picks].sum() <= limit:
            cost = f[rows, picks].sum()
            if best is None or cost < best:
                best = cost
    return best


def test_minimize_respects_the_limit_and_finds_the_optimum_of_small_cases():
    rng = np.random.default_rng(3)
    rows = np.arange(4)
    for _ in range(30):
        f = rng.integers(1, 20, (4, 4)).astype(float)
        g = rng.random((4, 4))
        limit = float(rng.uniform(g.min(axis=1).sum(), g.max(axis=1).sum()))
        picks = minimize(f, g, limit)
        assert g[rows, picks].sum() <= limit
        assert f[rows, picks].sum() <= brute_force(f, g, limit) * 1.2
    assert minimize(f, g, g.min(axis=1).sum() - 1e-9) is None
    np.testing.assert_array_equal(minimize(f, g, 1e9), np.argmin(f, axis=1))


def test_array_enabled_modes_and_cycles():
    from flows.perf import estimate_mode

    default, dense = Array.load("default"), Array.load("dense_int8")
    mx = Choice("fp4_e2m1", scale_kind="pow2", act="mxint8")
    assert default.runs(mx, 384) and not dense.runs(mx, 384)
    assert all(default.runs(c, 384) for c in candidate_choices())
    assert default.cycles(Choice("int4", "2:4", group=128), 128, 384, 1536) == estimate_mode(
        default.timing, 128, 1536, 384, "int4", "2:4", "int", group=128).cycles
    assert default.cycles(Choice("int4", group=128), 128, 384, 384) < default.cycles(
        Choice("int8"), 128, 384, 384)


@pytest.fixture(scope="module")
def setup(model):  # noqa: F811
    array = Array.load("default")
    cal, ev = split_sentences(load_sentences(), 96)
    cal, ev = cal[:6], ev[:4]
    enc = Encoder(model, array.cfg, n_layers=1)
    x_cal = enc.calibration_inputs(cal)
    prof = profile(enc, array, x_cal, cal[:3], 32, choices=CHOICES, sample=32)
    reference = enc.forward(ev)
    return enc, array, x_cal, cal, ev, prof, reference


def test_planner_respects_every_budget(setup):
    enc, array, x_cal, cal, ev, prof, reference = setup
    rows = np.arange(len(prof.names))
    uniform8 = prof.totals(np.zeros(len(rows), int))
    for floor in (uniform8["predicted_cosine"], 0.99, 0.9):
        picks = plan_for(prof, {"min_cosine": floor})
        t = prof.totals(picks)
        assert t["predicted_cosine"] >= floor - 1e-12
        assert t["cycles"] <= uniform8["cycles"]
    for bits in (8.2, 4.5, 3.0):
        t = prof.totals(plan_for(prof, {"max_bits": bits}))
        assert t["bits_per_weight"] <= bits
    t = prof.totals(plan_for(prof, {"max_cycles": uniform8["cycles"] // 2}))
    assert t["cycles"] <= uniform8["cycles"] // 2
    assert plan_for(prof, {"max_bits": 1.0}) is None


def test_calibration_check_tightens_the_floor(setup):
    enc, array, x_cal, cal, ev, prof, reference = setup
    sens_ref = enc.forward(cal[:3])
    seen = []

    def check(layers):
        stats = measure(enc, layers, x_cal, cal[:3], sens_ref)
        seen.append(stats["mean"])
        return stats

    picks, budget, stats = solve(prof, {"min_cosine": 0.995}, check)
    assert budget["solved_floor"] >= 0.995 and stats["mean"] == seen[-1]
    assert stats["mean"] >= 0.995 or len(seen) > 1


def test_plan_json_round_trip_and_recomputed_metric(setup, tmp_path):
    enc, array, x_cal, cal, ev, prof, reference = setup
    picks = plan_for(prof, {"min_cosine": 0.99})
    measured = measure(enc, plan_layers(prof, picks), x_cal, ev, reference)
    split = {"file": "x", "total": 10, "seed": 0, "calibration": 6, "evaluation": 4}
    doc = plan_document(prof, picks, array, {"min_cosine": 0.99}, measured, split)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    back = read_plan(str(path))
    assert back["choices"] == plan_layers(prof, picks)
    assert back["totals"] == json.loads(json.dumps(doc["totals"]))
    again = measure(enc, back["choices"], x_cal, ev, enc.forward(ev))
    assert again == measured
    assert abs(doc["totals"]["bits_per_weight"] - prof.totals(picks)["bits_per_weight"]) < 1e-12
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a compression plan"):
        read_plan(str(path))


def test_results_section_is_replaced_not_duplicated(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\ndemo text\n")
    write_section(path, "first")
    write_section(path, "second")
    text = path.read_text()
    assert text.startswith("# Results") and "second" in text and "first" not in text
    assert text.count("examples.plan --report") == 1


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.json"
    bad.write_text("{")
    for args in (["--min-cosine", "2"], ["--layers", "9"], ["--check", str(bad)]):
        proc = subprocess.run([sys.executable, "-m", "examples.plan", *args],
                              capture_output=True, text=True)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("python -m examples.plan: error:")
