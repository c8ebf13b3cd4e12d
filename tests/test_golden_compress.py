"""Compressor, weight loading and metrics: canonical output, refusals, SQNR sanity, bits."""

import math

import numpy as np
import pytest
from safetensors.numpy import save_file

from golden.compress import compress, load_weights
from golden.formats import decode
from golden.gemm import dequantize_weights
from golden.metrics import bits_per_weight, metadata_floor, sqnr_db


def gaussian(K=512, N=64, seed=0):
    return np.random.default_rng(seed).normal(size=(K, N))


def test_kept_weight_that_quantizes_to_zero_is_canonical_padding():
    w = np.array([[0.0], [0.0], [0.001], [1.0]])  # 2:4 keeps idx 2 and 3; 0.001 → q = 0
    layer = compress(w, fmt="int8", sparsity="2:4", scale_kind="int")
    assert layer.idx[:, 0].tolist() == [0, 3] and layer.codes[:, 0].tolist() == [0, 127]


def test_uint4_padding_uses_the_zero_point():
    # 2:4 keeps −1 (idx 0) and a zero (idx 1); range [−1, 0] → s = 1/15, z = 15
    layer = compress(np.array([[-1.0], [0.0], [0.0], [0.0]]), fmt="uint4", sparsity="2:4",
                     scale_kind="int")
    assert layer.zeros.tolist() == [[15]]
    assert layer.idx[:, 0].tolist() == [0, 1] and layer.codes[:, 0].tolist() == [0, 15]
    # statistics come from kept weights only: 1:4 keeps 2.0 alone → range [0, 2], z = 0
    layer = compress(np.array([[-1.0], [0.0], [0.0], [2.0]]), fmt="uint4", sparsity="1:4",
                     scale_kind="int")
    assert layer.zeros.tolist() == [[0]] and layer.codes[:, 0].tolist() == [15]
    np.testing.assert_array_equal(dequantize_weights(layer)[:3, 0], [0.0, 0.0, 0.0])


def test_default_groups():
    w = gaussian(64, 2)
    assert compress(w, fmt="int8", scale_kind="int").group == 64
    assert compress(w, fmt="fp4_e2m1", scale_kind="pow2").group == 32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(fmt="int4", scale_kind="int", group=48), "not divisible by group"),
        (dict(fmt="int4", scale_kind="int", sparsity="2:8", group=4), "multiple of the sparsity"),
        (dict(fmt="int5", scale_kind="int"), "unknown format"),
        (dict(fmt="int4", scale_kind="int", sparsity="3:4"), "bad sparsity"),
        (dict(fmt="uint4", scale_kind="pow2"), "not allowed for uint4"),
        (dict(fmt="int4", scale_kind="pow2", group=64), "group 32"),
        (dict(fmt="int4", scale_kind="float"), "unknown scale kind"),
        (dict(fmt="int4", scale_kind="int", rceil=True), "rceil"),
        (dict(fmt="int4", scale_kind="int", scale_bits=40), "scale_bits"),
    ],
)
def test_compress_refusals(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compress(gaussian(64, 2), **kwargs)


def test_compress_refuses_k_not_multiple_of_block_and_nonfinite():
    with pytest.raises(ValueError, match="sparsity block"):
        compress(gaussian(66, 2), fmt="int8", sparsity="2:4", scale_kind="none")
    w = gaussian(8, 2)
    w[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compress(w, fmt="int8", scale_kind="none")


@pytest.mark.parametrize(
    ("fmt", "kind", "group", "sparsity", "min_db"),
    [
        ("int8", "int", None, "dense", 35.0),
        ("mxint8", "pow2", 32, "dense", 35.0),
        ("int8", "none", None, "dense", 33.0),
        ("int4", "int", 128, "dense", 15.0),
        ("uint4", "int", 128, "dense", 17.0),
        ("fp4_e2m1", "pow2", 32, "dense", 15.0),
        ("fp4_e2m1", "int", 128, "dense", 15.0),
        ("ternary", "int", 128, "dense", 4.0),
        ("int8", "int", None, "4:8", 5.0),
        ("fp8_e4m3", "pow2", 32, "dense", 28.0),
        ("fp8_e5m2", "pow2", 32, "dense", 22.0),
        ("fp8_e4m3", "int", 128, "dense", 28.0),
        ("uint2", "int", 32, "dense", 5.0),
        ("uint2", "int", 32, "2:4", 2.0),
    ],
)
def test_sqnr_sanity(fmt, kind, group, sparsity, min_db):
    w = gaussian()
    layer = compress(w, fmt=fmt, sparsity=sparsity, group=group, scale_kind=kind)
    assert sqnr_db(w, dequantize_weights(layer)) > min_db


def test_int8_per_channel_error_bound():
    w = gaussian(256, 16) * np.geomspace(1e-3, 1e3, 16)
    layer = compress(w, fmt="int8", scale_kind="int")
    step = layer.scales[0].astype(float) * 2.0 ** layer.scale_exp
    err = np.abs(w - dequantize_weights(layer)).max(axis=0)
    assert (err <= 0.5 * step + 64 * 2.0 ** layer.scale_exp).all()
    assert (np.abs(layer.scales) > 2**14).all()  # full range use


def test_rceil_never_saturates():
    w = gaussian(64, 8) * 3.0
    layer = compress(w, fmt="fp4_e2m1", scale_kind="pow2", rceil=True)
    e = layer.scales.astype(int) - 127
    block_max = np.abs(w).reshape(2, 32, 8).max(axis=1)
    assert (block_max <= 6.0 * 2.0**e).all() and (block_max > 6.0 * 2.0 ** (e - 1)).all()


def test_bits_per_weight_and_floor():
    w = gaussian(256, 4)
    b = bits_per_weight(compress(w, fmt="int4", group=128, scale_kind="int"))
    assert b == {"values": 4.0, "metadata": 0.0, "scales": 16 / 128 + 32 / 256,
                 "total": 4.25}
    b = bits_per_weight(compress(w, fmt="int4", sparsity="2:4", group=128, scale_kind="int",
                                 scale_bits=8))
    assert (b["values"], b["metadata"], b["scales"]) == (2.0, 1.0, 8 / 128 + 32 / 256)
    b = bits_per_weight(compress(w, fmt="uint4", group=64, scale_kind="int"))
    assert b["scales"] == (16 + 4) / 64 + 32 / 256
    b = bits_per_weight(compress(w, fmt="fp4_e2m1", sparsity="2:8", scale_kind="pow2"))
    assert (b["values"], b["metadata"], b["scales"]) == (1.0, 0.75, 8 / 32)
    assert metadata_floor(2, 4) == pytest.approx(math.log2(6) / 4)
    assert metadata_floor(1, 1) == 0.0 and metadata_floor(4, 8) == pytest.approx(math.log2(70) / 8)


def test_sqnr_edge_cases():
    assert sqnr_db([1.0, 2.0], [1.0, 2.0]) == math.inf
    assert sqnr_db([0.0], [1.0]) == -math.inf
    assert sqnr_db([1.0, 1.0], [1.1, 0.9]) == pytest.approx(20.0)


def test_load_weights_npy_and_safetensors(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "w.npy", w)
    np.testing.assert_array_equal(load_weights(str(tmp_path / "w.npy")), w)
    save_file({"layer.weight": w, "other": np.zeros((4,), np.float32)},
              str(tmp_path / "m.safetensors"))
    got = load_weights(f"{tmp_path}/m.safetensors:layer.weight")
    assert got.shape == (3, 2) and got.dtype == np.float64
    np.testing.assert_array_equal(got, w.T)  # PyTorch [out, in] → [K = in, N = out]
    with pytest.raises(ValueError, match="holds 2 tensors"):
        load_weights(str(tmp_path / "m.safetensors"))
    with pytest.raises(ValueError, match="not found"):
        load_weights(f"{tmp_path}/m.safetensors:nope")
    with pytest.raises(ValueError, match="2-D"):
        load_weights(f"{tmp_path}/m.safetensors:other")
    np.save(tmp_path / "i.npy", np.zeros((2, 2), np.int8))
    with pytest.raises(ValueError, match="floating point"):
        load_weights(str(tmp_path / "i.npy"))
    with pytest.raises(ValueError, match="does not exist"):
        load_weights(str(tmp_path / "missing.npy"))


def test_uint2_padding_uses_the_zero_point_and_codes_stay_in_range():
    # 2:4 keeps −1 (idx 0) and a zero (idx 1); range [−1, 0] → s = 1/3, z = 3
    layer = compress(np.array([[-1.0], [0.0], [0.0], [0.0]]), fmt="uint2", sparsity="2:4",
                     scale_kind="int")
    assert layer.zeros.tolist() == [[3]]
    assert layer.idx[:, 0].tolist() == [0, 1] and layer.codes[:, 0].tolist() == [0, 3]
    layer = compress(gaussian(64, 8), fmt="uint2", group=16, scale_kind="none")
    assert layer.codes.max() <= 3 and layer.zeros.max() <= 3
    from golden.metrics import bits_per_weight

    assert bits_per_weight(layer)["values"] == 2.0


def test_fp8_pow2_layers_hold_no_nan_codes_and_round_trip():
    w = gaussian(64, 8) * np.geomspace(1e-4, 1e4, 8)
    for fmt in ("fp8_e4m3", "fp8_e5m2"):
        layer = compress(w, fmt=fmt, scale_kind="pow2")
        assert not decode(fmt, layer.codes)[1].any() and (layer.codes != 0x80).all()
        relayer = compress(dequantize_weights(layer), fmt=fmt, scale_kind="pow2")
        np.testing.assert_array_equal(relayer.codes, layer.codes)
        np.testing.assert_array_equal(relayer.scales, layer.scales)


def test_nvfp4_compressor_recipe_by_hand():
    from golden.compress import compress_nvfp4

    w = np.zeros((32, 2))
    w[:16, 0] = np.linspace(-3.0, 2.0, 16)
    w[0, 1] = 6.0 * 448.0 * 0.5  # the tensor maximum: T = amax / (6·448) = 0.5
    layer, t = compress_nvfp4(w)
    assert t == 0.5 and layer.group == 16 and layer.scale_bits == 19
    assert (layer.scale_exp == -10).all()
    # column 0 block 0: amax 3 → E4M3 RNE(3 / (6·0.5)) = 1.0 → s = 512; block 1 empty → s = 0
    assert layer.scales[:, 0].tolist() == [512, 0]
    assert layer.scales[0, 1] == 448 * 512  # the tensor maximum uses the full E4M3 range
    wq = dequantize_weights(layer) * t
    assert wq[0, 0] == -3.0 and wq[0, 1] == w[0, 1]
    assert sqnr_db(w, wq) > 20
    rng = np.random.default_rng(1)
    w = rng.normal(size=(64, 16))
    layer, t = compress_nvfp4(w, sparsity="2:4")
    assert layer.sparsity == "2:4" and sqnr_db(w, dequantize_weights(layer) * t) > 5
    layer, t = compress_nvfp4(np.zeros((16, 2)))
    assert t == 1.0 and not layer.scales.any()
    with pytest.raises(ValueError, match="not divisible by group 16"):
        compress_nvfp4(np.ones((24, 2)))
