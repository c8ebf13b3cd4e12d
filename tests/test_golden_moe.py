"""golden.moe: the grouped (MoE) GEMM equals the per-expert GEMM row by row; bad routings."""

import numpy as np
import pytest

from gen.presets import preset
from golden.__main__ import main
from golden.gemm import gemm
from golden.layer import save_layer
from golden.moe import check_routing, expert_slots, grouped_gemm
from hw.config import Mode
from verif.cases import random_case

TINY = preset("tiny")
M, K, N = 9, 128, 5
MODES = [Mode("int8", "dense", "none", out_stage="requant"), Mode("int4", "2:4", "int"),
         Mode("ternary", "dense", "int"), Mode("uint4", "2:8", "int", out_stage="requant")]


def _experts(modes=MODES, mx=False):
    layers = []
    x = x_exp = None
    for i, mode in enumerate(modes):
        layer, xi, xe = random_case(50 + i, TINY, mode, M, K, N,
                                    group=64 if mode.scale_kind == "int" else None)
        layers.append(layer)
        if x is None:
            x, x_exp = xi, xe
    return layers, x, (x_exp if mx else None)


def _per_expert(x, layers, routing, stages, x_exp=None):
    r = np.asarray(routing).reshape(M, -1)
    y = np.zeros((M, r.shape[1], N), np.int64)
    err = np.zeros((M, r.shape[1], N), bool)
    for e, layer in enumerate(layers):
        ye, erre = gemm(x, layer, x_exp=x_exp, out_stage=stages[e])
        for t, s in zip(*np.nonzero(r == e), strict=True):
            y[t, s], err[t, s] = ye[t], erre[t]
    return y, err


def test_top1_matches_each_expert_mixed_modes():
    layers, x, _ = _experts()
    routing = np.array([2, 0, 2, 2, 0, 1, 2, 0, 2])  # expert 3 gets no token
    stages = [m.out_stage for m in MODES]
    y, err = grouped_gemm(x, layers, routing, out_stage=stages)
    assert y.shape == (M, N) and y.dtype == np.int64 and err.shape == (M, N)
    want, want_err = _per_expert(x, layers, routing, stages)
    assert np.array_equal(y, want[:, 0]) and np.array_equal(err, want_err[:, 0])


def test_top_k_is_uncombined_per_slot():
    layers, x, _ = _experts()
    rng = np.random.default_rng(3)
    routing = np.stack([rng.permutation(4)[:2] for _ in range(M)])
    y, err = grouped_gemm(x, layers, routing, out_stage="raw")
    assert y.shape == (M, 2, N)
    want, want_err = _per_expert(x, layers, routing, ["raw"] * 4)
    assert np.array_equal(y, want) and np.array_equal(err, want_err)


def test_all_requant_gives_int8_and_pow2_takes_x_exp():
    modes = [Mode("fp4_e2m1", "dense", "pow2", mx_act=True),
             Mode("int8", "dense", "pow2", mx_act=True)]
    layers, x, x_exp = _experts(modes, mx=True)
    routing = np.array([1, 1, 0, 1, 0, 0, 1, 1, 1])
    y, err = grouped_gemm(x, layers, routing, x_exp=x_exp)
    want, want_err = _per_expert(x, layers, routing, ["raw", "raw"], x_exp)
    assert np.array_equal(y, want[:, 0]) and np.array_equal(err, want_err[:, 0])
    layers, x, _ = _experts()
    req = [layer for layer, m in zip(layers, MODES, strict=True) if m.out_stage == "requant"]
    y8, err8 = grouped_gemm(x, req, np.arange(M) % 2, out_stage="requant")
    want, want_err = _per_expert(x, req, np.arange(M) % 2, ["requant"] * 2)
    assert y8.dtype == np.int8 and np.array_equal(y8, want[:, 0])
    assert np.array_equal(err8, want_err[:, 0])


def test_expert_slots_keep_token_order():
    r = check_routing(np.array([[1, 0], [0, 2], [1, 2]]), 3, 3)
    slots = expert_slots(r, 4)
    assert [s.tolist() for s in slots] == [[1, 2], [0, 4], [3, 5], []]


@pytest.mark.parametrize("routing, words", [
    (np.array([0, 1, 4, 0, 0, 0, 0, 0, 0]), ["index 4", "out of range", "4 experts"]),
    (np.array([0, -1, 0, 0, 0, 0, 0, 0, 0]), ["index -1", "out of range"]),
    (np.zeros(8, np.int64), ["routing", "shape", "[9]"]),
    (np.zeros((9, 2, 1), np.int64), ["routing", "shape"]),
    (np.zeros(9, np.float32), ["integer", "float32"]),
    (np.array([[0, 0]] * 9), ["token 0", "same expert twice"]),
])
def test_bad_routing(routing, words):
    layers, x, _ = _experts()
    with pytest.raises(ValueError) as info:
        grouped_gemm(x, layers, routing)
    for w in words:
        assert w in str(info.value)


def test_bad_experts():
    layers, x, x_exp = _experts()
    r = np.zeros(M, np.int64)
    narrow, _, _ = random_case(9, TINY, MODES[1], M, K, N + 1, group=64)
    short, _, _ = random_case(9, TINY, MODES[1], M, K // 2, N, group=64)
    cases = [((x, [layers[0], narrow], r), {}, "same N"),
             ((x, [layers[0], short], r), {}, "K=64"),
             ((x, [], r), {}, "at least one expert"),
             ((x, layers, r), {"out_stage": ["raw"]}, "1 output stages for 4 experts"),
             ((x, layers[1:3], r), {"out_stage": "requant"}, "expert 0: out_stage 'requant'"),
             ((x, layers, r), {"x_exp": np.full((M, K // 32), 127, np.uint8)}, "pow2")]
    for args, kw, words in cases:
        with pytest.raises(ValueError, match=words):
            grouped_gemm(*args, **kw)


def test_cli_experts(tmp_path, capsys):
    layers, x, _ = _experts()
    paths = []
    for e, layer in enumerate(layers):
        save_layer(tmp_path / f"e{e}.npz", layer)
        paths.append(str(tmp_path / f"e{e}.npz"))
    np.save(tmp_path / "x.npy", x)
    routing = np.array([3, 3, 1, 0, 1, 0, 0, 1, 3])  # expert 2 gets no token
    np.save(tmp_path / "r.npy", routing)
    stages = [m.out_stage for m in MODES]
    base = ["gemm", "--x", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]
    status = main([*base, "--experts", ",".join(paths), "--routing", str(tmp_path / "r.npy"),
                   "--out-stages", ",".join(stages), "--err-out", str(tmp_path / "e.npy")])
    y, err = grouped_gemm(x, layers, routing, out_stage=stages)
    assert status == (3 if err.any() else 0)  # 3: some output carries the error flag
    assert np.array_equal(np.load(tmp_path / "y.npy"), y)
    assert np.array_equal(np.load(tmp_path / "e.npy"), err)
    capsys.readouterr()
    np.save(tmp_path / "r_bad.npy", routing + 2)
    assert main([*base, "--experts", ",".join(paths), "--routing",
                 str(tmp_path / "r_bad.npy")]) == 2
    assert "out of range" in capsys.readouterr().err
