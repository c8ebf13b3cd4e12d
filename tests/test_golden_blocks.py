"""Block sparsity (SPEC §3): layer keys, validation, the compressor's block pruning, storage."""

import io

import numpy as np
import pytest

from golden.__main__ import main
from golden.blocks import block_scores, parse_block, prune_blocks
from golden.compress import compress
from golden.gemm import dequantize_weights, gemm_raw
from golden.layer import LayerError, load_layer, save_layer, validate_arrays
from golden.metrics import bits_per_weight

K, N = 128, 8
MODES = [("int8", "dense", "int", 32), ("int4", "2:4", "int", 32), ("uint4", "2:8", "int", 32),
         ("ternary", "dense", "none", None), ("fp4_e2m1", "dense", "pow2", None),
         ("mxint8", "4:8", "pow2", None), ("uint4", "dense", "int", None)]


def _w(seed=0):
    return np.random.default_rng(seed).standard_normal((K, N))


def _dense_keep(layer):
    bk, bn = (int(v) for v in layer.block_shape)
    return np.repeat(np.repeat(layer.block_mask.astype(bool), bk, 0), bn, 1)


@pytest.mark.parametrize("fmt, sparsity, kind, group", MODES)
def test_compress_blocks_every_mode(fmt, sparsity, kind, group):
    w = _w()
    layer = compress(w, fmt=fmt, sparsity=sparsity, scale_kind=kind, group=group,
                     block=(32, 2), block_density=0.5)
    assert layer.block_mask.shape == (K // 32, N // 2) and layer.block_mask.sum() == 8
    buf = io.BytesIO()
    save_layer(buf, layer)
    buf.seek(0)
    again = load_layer(buf)
    np.testing.assert_array_equal(again.block_mask, layer.block_mask)
    keep = _dense_keep(layer)
    deq = dequantize_weights(again)
    assert (deq[~keep] == 0).all()
    # Groups wholly kept are quantized as without blocks (statistics over kept weights only;
    # with G = bk every group is wholly kept or wholly dropped): exactly for pow2, up to the
    # fixed-point rounding of int scales (their column exponent sees fewer groups).
    if group == 32 or kind == "pow2":
        ref = dequantize_weights(compress(w, fmt=fmt, sparsity=sparsity, scale_kind=kind,
                                          group=group))
        np.testing.assert_allclose(deq[keep], ref[keep], rtol=0 if kind == "pow2" else 1e-3)
    # A reader ignoring the mask computes the same GEMM.
    x = np.random.default_rng(1).integers(-127, 128, (3, K)).astype(np.int8)
    plain = layer.copy(block_shape=None, block_mask=None)
    for a, b in zip(gemm_raw(x, layer), gemm_raw(x, plain), strict=True):
        np.testing.assert_array_equal(a, b)


def test_block_pruning_by_norm_and_activation_aware():
    w = np.ones((64, 4))
    w[32:, 2:] = 5.0   # the strongest block
    w[:32, :2] = 0.1   # the weakest
    mask = prune_blocks(w, (32, 2), 0.25)
    assert mask.tolist() == [[0, 0], [0, 1]]
    mask = prune_blocks(w, (32, 2), 0.75)
    assert mask.tolist() == [[0, 1], [1, 1]]
    assert prune_blocks(np.ones((64, 4)), (32, 2), 0.5).tolist() == [[1, 1], [0, 0]]  # ties
    x = np.ones((4, 64))
    x[:, 32:] = 0.0    # the activations never reach k >= 32
    assert block_scores(w, (32, 2), x)[1].sum() == 0
    mask = prune_blocks(w, (32, 2), 0.25, score=block_scores(w, (32, 2), x))
    assert mask.tolist() == [[0, 1], [0, 0]]
    with pytest.raises(ValueError, match="density"):
        prune_blocks(w, (32, 2), 0.0)


def test_compress_refuses_bad_blocks():
    w = _w()
    with pytest.raises(ValueError, match="multiple of the sparsity block"):
        compress(w, fmt="int4", sparsity="2:8", scale_kind="int", block=(4, 2),
                 block_density=0.5)
    with pytest.raises(ValueError, match="MX block"):
        compress(w, fmt="fp4_e2m1", scale_kind="pow2", block=(16, 2), block_density=0.5)
    with pytest.raises(ValueError, match="does not divide N"):
        compress(w, fmt="int8", scale_kind="int", block=(32, 3), block_density=0.5)
    with pytest.raises(ValueError, match="density"):
        compress(w, fmt="int8", scale_kind="int", block=(32, 2))
    assert parse_block("64x8") == (64, 8)
    with pytest.raises(ValueError, match="BKxBN"):
        parse_block("64")


def _arrays(fmt="uint4", sparsity="2:4", kind="int", group=32):
    layer = compress(_w(), fmt=fmt, sparsity=sparsity, scale_kind=kind, group=group,
                     block=(32, 4), block_density=0.5)
    return layer.to_arrays(), layer


def _dropped(layer):
    i, j = (int(v[0]) for v in np.nonzero(layer.block_mask == 0))
    return i, j


@pytest.mark.parametrize("key, change, message", [
    ("block_mask", lambda a, L: a.pop("block_mask"), "given together"),
    ("block_shape", lambda a, L: a.pop("block_shape"), "given together"),
    ("block_shape", lambda a, L: a.update(block_shape=np.array([2, 4])), "multiple of the"),
    ("block_shape", lambda a, L: a.update(block_shape=np.array([32, 3])), "does not divide"),
    ("block_shape", lambda a, L: a.update(block_shape=np.array([32, 4], np.int32)), "dtype"),
    ("block_mask", lambda a, L: a.update(block_mask=a["block_mask"][:1]), "shape"),
    ("block_mask", lambda a, L: a.update(block_mask=a["block_mask"] * 2), "values"),
    ("block_mask", lambda a, L: a.update(block_mask=a["block_mask"].astype(bool)), "dtype"),
])
def test_validation_names_the_block_key(key, change, message):
    arrays, layer = _arrays()
    change(arrays, layer)
    with pytest.raises(LayerError, match=message) as info:
        validate_arrays(arrays)
    assert info.value.key == key


def test_validation_of_dropped_block_contents():
    arrays, layer = _arrays()
    i, j = _dropped(layer)
    rows = slice(i * 16, (i + 1) * 16)  # 32 k of 2:4 = 16 slots
    for key, change, message in [
        ("codes", lambda a: a.__setitem__("codes", _poke(a["codes"], rows.start, j * 4, 5)),
         "dropped block"),
        ("idx", lambda a: a.__setitem__("idx", _poke(a["idx"], rows.start + 1, j * 4, 3)),
         "canonical"),
        ("scales", lambda a: a.__setitem__("scales", _poke(a["scales"], i, j * 4, 3)),
         "wholly in dropped"),
        ("zeros", lambda a: a.__setitem__("zeros", _poke(a["zeros"], i, j * 4, 3)),
         "wholly in dropped"),
    ]:
        broken = dict(arrays)
        change(broken)
        with pytest.raises(LayerError, match=message) as info:
            validate_arrays(broken)
        assert info.value.key == key
    pow2, layer = _arrays("fp4_e2m1", "dense", "pow2", 32)
    i, j = _dropped(layer)
    pow2["scales"] = _poke(pow2["scales"], i, j * 4, 120)
    with pytest.raises(LayerError, match="127"):
        validate_arrays(pow2)
    bad, _ = _arrays("fp4_e2m1", "dense", "pow2", 32)
    bad["block_shape"] = np.array([16, 4])
    bad["block_mask"] = np.ones((K // 16, 2), np.uint8)
    with pytest.raises(LayerError, match="MX block"):
        validate_arrays(bad)


def _poke(a, i, j, v):
    a = a.copy()
    a[i, j] = v
    return a


def test_storage_counts_dropped_blocks_as_mask_bits():
    w = _w()
    full = bits_per_weight(compress(w, fmt="int4", sparsity="2:4", scale_kind="int", group=32))
    half = bits_per_weight(compress(w, fmt="int4", sparsity="2:4", scale_kind="int", group=32,
                                    block=(32, 2), block_density=0.5))
    assert "mask" not in full
    assert half["values"] == full["values"] / 2
    assert half["metadata"] == full["metadata"] / 2
    assert half["mask"] == (K // 32) * (N // 2) / (K * N)
    assert half["scales"] == pytest.approx(16 / 32 / 2 + 32 / K)
    assert half["total"] == pytest.approx(sum(v for k, v in half.items() if k != "total"))


def test_cli_compress_with_blocks(tmp_path, capsys):
    w = _w()
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "x.npy", np.random.default_rng(3).standard_normal((5, K)))
    out = tmp_path / "L.npz"
    assert main(["compress", str(tmp_path / "w.npy"), "--format", "int4", "--sparsity", "2:4",
                 "--scale", "int", "--group", "32", "--block", "32x2", "--block-density",
                 "0.25", "--block-x", str(tmp_path / "x.npy"), "-o", str(out)]) == 0
    assert "block mask" in capsys.readouterr().out
    layer = load_layer(out)
    assert layer.block_mask.sum() == 4
    assert main(["info", str(out)]) == 0
    assert "4 of 16 kept" in capsys.readouterr().out
    assert main(["compress", str(tmp_path / "w.npy"), "--format", "int4", "--scale", "int",
                 "--block", "32x2", "-o", str(out)]) == 2
    assert "--block-density" in capsys.readouterr().err
