"""Importers: tensors packed by hand in each producer's documented layout → golden layers.

The packing helpers below are written from the producers' own pack loops (AutoGPTQ
``QuantLinear.pack``, AutoAWQ ``WQLinear_GEMM.from_linear``, PyTorch
``_sparse_semi_structured_from_dense``, bitnet.cpp ``quantize_i2_s``), independently of
`golden.importers`, and docs/IMPORTERS.md describes the same layouts.
"""

import ml_dtypes
import numpy as np
import pytest

from golden.gemm import dequantize_weights, gemm_raw
from golden.importers import (
    AWQ_ORDER,
    cutlass_meta_gather_offsets,
    import_awq,
    import_bitnet_i2s,
    import_gptq,
    import_semi_structured,
    import_semi_structured_dense,
    semi_structured_to_dense,
    unpack_i2s,
    unpack_int32_nibbles,
)
from golden.layer import load_layer, save_layer
from golden.sparsity import unpack_nm

RNG = np.random.default_rng(7)


def as_int32(u):
    return np.asarray(u, dtype=np.uint64).astype(np.uint32).view(np.int32)


# ----------------------------------------------------------------------------- GPTQ


def gptq_pack(q, z, version):
    """AutoGPTQ: qweight[i, n] |= q[8i + j, n] << 4j; qzeros[g, c] |= stored[g, 8c + j] << 4j."""
    K, N = q.shape
    qweight = np.zeros((K // 8, N), dtype=np.uint64)
    for i in range(K // 8):
        for j in range(8):
            qweight[i] |= q[8 * i + j].astype(np.uint64) << np.uint64(4 * j)
    stored = z - 1 if version == 1 else z
    qzeros = np.zeros((z.shape[0], N // 8), dtype=np.uint64)
    for c in range(N // 8):
        for j in range(8):
            qzeros[:, c] |= stored[:, 8 * c + j].astype(np.uint64) << np.uint64(4 * j)
    return as_int32(qweight), as_int32(qzeros)


def gptq_case(K=64, N=16, G=2, zmin=1):
    q = RNG.integers(0, 16, size=(K, N))
    z = RNG.integers(zmin, 16, size=(G, N))
    scales = RNG.uniform(0.004, 0.02, size=(G, N)).astype(np.float16)  # within 16x: exact
    return q, z, scales


def test_unpack_literal_words():
    # 0x76543210: nibble j = j, so a GPTQ qweight column reads inputs 0..7 as codes 0..7
    assert unpack_int32_nibbles(as_int32([[0x76543210]]), axis=0)[:, 0].tolist() == list(
        range(8))
    # AWQ packs columns [0, 2, 4, 6, 1, 3, 5, 7] into nibbles 0..7
    assert unpack_int32_nibbles(as_int32([[0x75316420]]), axis=1, order=AWQ_ORDER)[0].tolist() \
        == list(range(8))
    # negative int32 words are read as their bits
    assert unpack_int32_nibbles(np.array([[-1]], np.int32), axis=1)[0].tolist() == [15] * 8


@pytest.mark.parametrize("version", [1, 2])
def test_gptq_is_exact(version):
    q, z, scales = gptq_case(zmin=1 if version == 1 else 0)
    qweight, qzeros = gptq_pack(q, z, version)
    imp = import_gptq(qweight, qzeros, scales, version=version)
    layer = imp.layer
    assert (layer.format, layer.sparsity, layer.group, layer.scale_kind) == ("uint4", "dense",
                                                                           32, "int")
    np.testing.assert_array_equal(layer.codes, q)
    np.testing.assert_array_equal(layer.zeros, z)
    expected = (q - np.repeat(z, 32, axis=0)) * np.repeat(scales.astype(np.float64), 32, axis=0)
    np.testing.assert_array_equal(imp.reference, expected)
    assert imp.exact and imp.scale_error == 0.0 and imp.perm is None
    np.testing.assert_array_equal(dequantize_weights(layer), expected)
    # the integer GEMM gives x @ W exactly (all products are small dyadic numbers)
    x = RNG.integers(-127, 128, size=(3, 64)).astype(np.int8)
    acc, err = gemm_raw(x, layer)
    np.testing.assert_array_equal(acc * np.ldexp(1.0, layer.scale_exp), x @ expected)
    assert not err.any()


def test_gptq_version_1_and_2_read_the_same_nibbles_differently():
    q, z, scales = gptq_case()
    z = np.minimum(z, 14)
    qweight, qzeros = gptq_pack(q, z, 2)  # stores z itself
    np.testing.assert_array_equal(import_gptq(qweight, qzeros, scales, version=2).layer.zeros, z)
    np.testing.assert_array_equal(import_gptq(qweight, qzeros, scales, version=1).layer.zeros,
                                  z + 1)


def test_gptq_v1_nibble_15_means_z16_and_is_refused():
    q, z, scales = gptq_case()
    z[1, 3] = 16  # AutoGPTQ v1 stores 15
    qweight, qzeros = gptq_pack(q, z, 1)
    with pytest.raises(ValueError, match="zero point 16 of group 1, column 3"):
        import_gptq(qweight, qzeros, scales, version=1)


def test_gptq_act_order_permutes_inputs():
    K, N, G = 64, 8, 4
    q, z, scales = gptq_case(K, N, G)
    g_idx = RNG.permutation(np.arange(K) // (K // G)).astype(np.int32)
    qweight, qzeros = gptq_pack(q, z, 1)
    imp = import_gptq(qweight, qzeros, scales, g_idx=g_idx)
    w_model = (q - z[g_idx]) * scales.astype(np.float64)[g_idx]  # the producer's dequant
    assert imp.perm is not None and sorted(imp.perm) == list(range(K))
    np.testing.assert_array_equal(g_idx[imp.perm], np.arange(K) // (K // G))
    np.testing.assert_array_equal(dequantize_weights(imp.layer), w_model[imp.perm])
    x = RNG.normal(size=(2, K))
    np.testing.assert_allclose(x[:, imp.perm] @ imp.reference, x @ w_model, rtol=1e-12)
    # trivial g_idx changes nothing; a lopsided one is refused
    assert import_gptq(qweight, qzeros, scales, g_idx=np.arange(K) // 16).perm is None
    with pytest.raises(ValueError, match="exactly 16 inputs"):
        import_gptq(qweight, qzeros, scales, g_idx=np.zeros(K, np.int32))


def test_gptq_symmetric_as_int4():
    q, z, scales = gptq_case()
    z[:] = 8
    qweight, qzeros = gptq_pack(q, z, 1)
    imp = import_gptq(qweight, qzeros, scales, int4_if_symmetric=True)
    assert imp.layer.format == "int4" and imp.layer.zeros is None
    np.testing.assert_array_equal(dequantize_weights(imp.layer), imp.reference)


def test_gptq_scale_rounding_is_reported():
    q, z, scales = gptq_case()
    scales[0, 0] = np.float16(0.02)
    scales[1, 0] = np.float16(0.0001234)  # 160x below its column max: low bits rounded off
    qweight, qzeros = gptq_pack(q, z, 1)
    imp = import_gptq(qweight, qzeros, scales)
    assert 0 < imp.scale_error < 2.0**-6 and not imp.exact
    exact32 = import_gptq(qweight, qzeros, scales, scale_bits=32)
    assert exact32.exact
    np.testing.assert_allclose(dequantize_weights(imp.layer), imp.reference, rtol=2.0**-6,
                               atol=0)


def test_gptq_refusals():
    q, z, scales = gptq_case()
    qweight, qzeros = gptq_pack(q, z, 1)
    with pytest.raises(ValueError, match="only 4-bit"):
        import_gptq(qweight, qzeros, scales, bits=8)
    with pytest.raises(ValueError, match="version must be 1 or 2"):
        import_gptq(qweight, qzeros, scales, version=3)
    with pytest.raises(ValueError, match="scales must be"):
        import_gptq(qweight, qzeros, scales[:, :8])
    with pytest.raises(ValueError, match="qzeros must unpack"):
        import_gptq(qweight, qzeros[:1], scales)
    with pytest.raises(ValueError, match="integer tensor"):
        import_gptq(qweight.astype(np.float32), qzeros, scales)


# ----------------------------------------------------------------------------- AWQ


def awq_pack(a):
    """AutoAWQ: packed[:, c] |= a[:, 8c + order_map[i]] << 4i, order_map [0,2,4,6,1,3,5,7]."""
    order_map = [0, 2, 4, 6, 1, 3, 5, 7]
    out = np.zeros((a.shape[0], a.shape[1] // 8), dtype=np.uint64)
    for c in range(a.shape[1] // 8):
        for i in range(8):
            out[:, c] |= a[:, 8 * c + order_map[i]].astype(np.uint64) << np.uint64(4 * i)
    return as_int32(out)


def test_awq_is_exact():
    K, N, G = 64, 16, 2
    q = RNG.integers(0, 16, size=(K, N))
    z = RNG.integers(0, 16, size=(G, N))
    scales = RNG.uniform(0.004, 0.02, size=(G, N)).astype(np.float16)
    imp = import_awq(awq_pack(q), awq_pack(z), scales)
    np.testing.assert_array_equal(imp.layer.codes, q)
    np.testing.assert_array_equal(imp.layer.zeros, z)
    expected = (q - np.repeat(z, 32, axis=0)) * np.repeat(scales.astype(np.float64), 32, axis=0)
    assert imp.exact
    np.testing.assert_array_equal(dequantize_weights(imp.layer), expected)
    # reading AWQ words in GPTQ's plain nibble order would scramble the columns
    plain = unpack_int32_nibbles(awq_pack(q), axis=1)
    assert not np.array_equal(plain, q)
    with pytest.raises(ValueError, match="qzeros must unpack"):
        import_awq(awq_pack(q), awq_pack(z)[:, :1], scales)


# ----------------------------------------------------------------------------- PyTorch 2:4


def two_four(out_f, in_f, dtype, rng=RNG):
    """A dense [out, in] tensor with exactly 2 nonzeros in every group of 4 inputs."""
    w = np.zeros((out_f, in_f))
    for r in range(out_f):
        for g in range(in_f // 4):
            keep = rng.choice(4, size=2, replace=False)
            w[r, 4 * g + keep] = rng.uniform(0.5, 2.0, size=2) * rng.choice([-1, 1], size=2)
    if dtype == np.int8:
        return np.round(w * 60).astype(np.int8)
    return w.astype(dtype)


def torch_compress(dense, per):
    """PyTorch's pre-reordering encoding: values [m, k/2] and meta, `per` groups per element.

    Groups with fewer than 2 nonzeros are encoded as ``_sparse_semi_structured_from_dense``
    does: [F,F,F,F], [F,F,F,T], [F,F,T,F] → (2, 3); [F,T,F,F] → (1, 2); [T,F,F,F] → (0, 2).
    """
    m, k = dense.shape
    nz = dense != 0
    pairs = {(False, False, False, False): (2, 3), (False, False, False, True): (2, 3),
             (False, False, True, False): (2, 3), (False, True, False, False): (1, 2),
             (True, False, False, False): (0, 2)}
    values = np.zeros((m, k // 2), dtype=dense.dtype)
    nibbles = np.zeros((m, k // 4), dtype=np.int64)
    for r in range(m):
        for g in range(k // 4):
            flags = tuple(bool(v) for v in nz[r, 4 * g: 4 * g + 4])
            i0, i1 = pairs.get(flags) or tuple(int(i) for i in np.flatnonzero(flags))
            values[r, 2 * g: 2 * g + 2] = dense[r, 4 * g + i0], dense[r, 4 * g + i1]
            nibbles[r, g] = i0 | (i1 << 2)
    meta = np.zeros((m, k // 4 // per), dtype=np.int64)
    for j in range(per):
        meta |= nibbles[:, j::per] << (4 * j)
    dt = np.int16 if per == 4 else np.int32
    return values, meta.astype(np.uint64).astype(np.uint32 if per == 8 else np.uint16).view(dt)


def old_torch_cutlass_reorder(meta, k):
    """Older PyTorch's gather that produced the CUTLASS-reordered metadata (magic numbers)."""
    m, ncols = meta.shape
    if meta.dtype == np.int32:
        magic0, magic1, magic2, magic3 = 4, 32, 16, k // 2
        magic4 = [0, k // 4, 1, k // 4 + 1]
    else:
        magic0, magic1, magic2, magic3 = 8, 64, 32, 2 * k
        magic4 = [0, k // 2, 1, k // 2 + 1, k, 3 * k // 2, k + 1, 3 * k // 2 + 1]
    tmp1 = (np.zeros((ncols // 2, 2 * m), np.int64)
            + np.arange(0, ncols, 2)[:, None]).reshape(-1, magic1)
    tmp2 = np.tile((np.arange(8)[:, None] * np.ones(magic0, np.int64) * ncols).ravel(),
                   m * ncols // magic1).reshape(-1, magic1)
    tmp3 = np.tile((np.arange(m // magic2)[:, None] * magic3), (ncols // 2, magic1))
    tmp4 = np.tile(np.array(magic4), (tmp3.shape[0], 8))
    offsets = (tmp1 + tmp2 + tmp3 + tmp4).ravel()
    return meta.ravel()[offsets].reshape(m, ncols)


@pytest.mark.parametrize("dtype", [np.int8, np.float16, ml_dtypes.bfloat16])
def test_semi_structured_plain_meta_round_trip(dtype):
    dense = two_four(8, 64, dtype)
    per = 8 if dtype == np.int8 else 4
    values, meta = torch_compress(dense, per)
    back, mask = semi_structured_to_dense(values, meta)
    np.testing.assert_array_equal(back.astype(np.float64), dense.astype(np.float64))
    np.testing.assert_array_equal(mask, dense != 0)


@pytest.mark.parametrize("dtype", [np.int8, np.float16])
def test_semi_structured_cutlass_meta(dtype):
    dense = two_four(64, 64, dtype)
    values, meta = torch_compress(dense, 8 if dtype == np.int8 else 4)
    reordered = old_torch_cutlass_reorder(meta, 64)
    assert not np.array_equal(reordered, meta)
    # the scatter offsets of newer PyTorch invert the older gather exactly
    flat = np.empty(meta.size, np.int64)
    flat[cutlass_meta_gather_offsets(64, meta.shape[1], meta.dtype.itemsize)] = np.arange(
        meta.size)
    np.testing.assert_array_equal(reordered.ravel(), meta.ravel()[flat])
    back, _ = semi_structured_to_dense(values, reordered, meta_layout="cutlass")
    np.testing.assert_array_equal(back.astype(np.float64), dense.astype(np.float64))


def test_semi_structured_int8_with_scale_is_exact_and_canonical():
    dense = two_four(8, 32, np.int8)
    dense[0, :4] = 0  # PyTorch encodes an empty group as (2, 3); the layer pads at (0, 1)
    dense[1, 4:8] = [0, 0, 0, 9]  # one nonzero at 3 → slots (0, 3)
    scale = RNG.uniform(0.01, 0.03, size=8).astype(np.float16)
    values, meta = torch_compress(dense, 8)
    imp = import_semi_structured(values, meta, scale=scale)
    layer = imp.layer
    assert (layer.format, layer.sparsity, layer.scale_kind, layer.group) == ("int8", "2:4",
                                                                           "int", 32)
    assert layer.idx[0:2, 0].tolist() == [0, 1] and layer.codes[0:2, 0].tolist() == [0, 0]
    assert layer.idx[2:4, 1].tolist() == [0, 3] and layer.codes[2:4, 1].tolist() == [0, 9]
    expected = dense.T.astype(np.float64) * scale.astype(np.float64)
    assert imp.exact
    np.testing.assert_array_equal(dequantize_weights(layer), expected)
    codes, stored = unpack_nm(layer.codes, layer.idx, 2, 4, 32)
    assert not (stored & ~(dense.T != 0) & (codes != 0)).any()
    # without a scale: the raw integer GEMM of the int8 codes
    raw = import_semi_structured_dense(dense).layer
    assert raw.scale_kind == "none" and (raw.scale_exp == 0).all()
    x = RNG.integers(-127, 128, size=(2, 32)).astype(np.int8)
    np.testing.assert_array_equal(gemm_raw(x, raw)[0], x.astype(np.int64) @ dense.T)


def test_semi_structured_float_keeps_the_pattern_and_quantizes_values(tmp_path):
    dense = two_four(16, 128, np.float16)
    mask = dense != 0
    noisy = np.where(mask, dense, np.float16(0.5))  # dense + mask form: masked-out values differ
    imp = import_semi_structured_dense(noisy, mask, fmt="int4", group=32)
    layer = imp.layer
    assert (layer.format, layer.sparsity, layer.group) == ("int4", "2:4", 32)
    assert not imp.values_exact and not imp.exact
    deq = dequantize_weights(layer)
    assert not (deq[~mask.T] != 0).any()  # nothing outside the mask
    np.testing.assert_array_equal(imp.reference, dense.T.astype(np.float64))
    assert np.abs(deq - imp.reference).max() <= 2.0 / 7 / 2 + 1e-3
    save_layer(tmp_path / "l.npz", layer)
    assert load_layer(tmp_path / "l.npz").sparsity == "2:4"


def test_semi_structured_refusals():
    dense = two_four(4, 16, np.float16)
    dense[0, :4] = 1
    with pytest.raises(ValueError, match="group 0 of row 0 keeps 4 of 4"):
        import_semi_structured_dense(dense)
    values, meta = torch_compress(two_four(4, 16, np.float16), 4)
    bad = meta.copy()
    bad[0, 0] = (bad[0, 0] & ~0xF) | 0b0101  # idx0 = idx1 = 1
    with pytest.raises(ValueError, match="names index 1 twice"):
        semi_structured_to_dense(values, bad)
    with pytest.raises(ValueError, match="must have shape"):
        semi_structured_to_dense(values, meta[:, :0])
    with pytest.raises(ValueError, match="rows % 32"):
        semi_structured_to_dense(values, meta, meta_layout="cutlass")
    with pytest.raises(ValueError, match="float weights only"):
        import_semi_structured_dense(two_four(4, 16, np.int8), fmt="int4")
    with pytest.raises(ValueError, match="int8 weights only"):
        import_semi_structured_dense(two_four(4, 16, np.float16), scale=1.0)


# ----------------------------------------------------------------------------- BitNet I2_S


def i2s_pack(codes, block=128):
    """bitnet.cpp quantize_i2_s: byte (j mod B/4) of block i gets code << (6 − 2·⌊j / (B/4)⌋)."""
    flat = codes.ravel()
    width = block // 4
    out = np.zeros(flat.size // 4, dtype=np.uint8)
    for i in range(flat.size // block):
        for j in range(block):
            out[i * width + j % width] |= np.uint8(flat[i * block + j] << (6 - 2 * (j // width)))
    return out


@pytest.mark.parametrize("block", [128, 64])
def test_bitnet_i2s(block):
    out_f, in_f = 4, 128
    ternary = RNG.integers(-1, 2, size=(out_f, in_f))
    scale = np.float32(0.0123)
    data = np.concatenate([i2s_pack(ternary + 1, block),
                           np.frombuffer(scale.tobytes(), np.uint8), np.zeros(28, np.uint8)])
    np.testing.assert_array_equal(unpack_i2s(data, (out_f, in_f), block=block), ternary + 1)
    imp = import_bitnet_i2s(data, (out_f, in_f), block=block)
    layer = imp.layer
    assert (layer.format, layer.group, layer.scale_kind) == ("ternary", in_f, "int")
    spec_codes = {-1: 0b11, 0: 0b00, 1: 0b01}
    np.testing.assert_array_equal(layer.codes, np.vectorize(spec_codes.get)(ternary.T))
    np.testing.assert_array_equal(imp.reference, ternary.T * float(scale))
    assert 0 < imp.scale_error <= 2.0**-15  # float32 scale rounded to a 16-bit int scale
    exact = import_bitnet_i2s(data, (out_f, in_f), block=block, scale_bits=32)
    assert exact.exact
    np.testing.assert_array_equal(dequantize_weights(exact.layer), exact.reference)


def test_i2s_literal_byte_and_refusals():
    data = np.zeros(32, np.uint8)
    data[0] = 0b10_01_00_10  # elements 0, 32, 64, 96 of the first 128-block
    codes = unpack_i2s(data, (1, 128))
    assert codes[0, [0, 32, 64, 96]].tolist() == [2, 1, 0, 2]
    assert codes[0, [1, 33, 127]].tolist() == [0, 0, 0]
    imp = import_bitnet_i2s(data, (1, 128), scale=1.0)
    assert imp.reference[[0, 32, 64, 96], 0].tolist() == [1.0, 0.0, -1.0, 1.0] and imp.exact
    data[1] = 0b11_00_00_00
    with pytest.raises(ValueError, match="code 3"):
        import_bitnet_i2s(data, (1, 128), scale=1.0)
    with pytest.raises(ValueError, match="no float32 scale"):
        import_bitnet_i2s(np.zeros(32, np.uint8), (1, 128))
    with pytest.raises(ValueError, match="multiple of 128"):
        unpack_i2s(np.zeros(32, np.uint8), (1, 100))
    with pytest.raises(ValueError, match="needs 64"):
        unpack_i2s(np.zeros(32, np.uint8), (2, 128))


# ----------------------------------------------------------------------------- NVFP4


def _pack_e2m1_rows(codes):
    """ModelOpt / compressed-tensors packing, written out: byte j = code 2j | code 2j+1 << 4."""
    out = np.zeros((codes.shape[0], codes.shape[1] // 2), np.uint8)
    for r in range(codes.shape[0]):
        for j in range(codes.shape[1] // 2):
            out[r, j] = int(codes[r, 2 * j]) | (int(codes[r, 2 * j + 1]) << 4)
    return out


def _write_safetensors(path, tensors):
    """A safetensors file written by hand: {name: (dtype tag, ndarray)}."""
    import json
    import struct

    header, blobs, offset = {}, [], 0
    for name, (tag, a) in tensors.items():
        raw = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": tag, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def _nvfp4_case(out_f=8, in_f=32, seed=0):
    rng = np.random.default_rng(seed)
    e2m1 = rng.integers(0, 16, size=(out_f, in_f)).astype(np.uint8)
    scales = rng.uniform(0.01, 400, size=(out_f, in_f // 16)).astype(ml_dtypes.float8_e4m3fn)
    return e2m1, scales


@pytest.mark.parametrize("convention", ["modelopt", "compressed-tensors"])
def test_nvfp4_is_exact(convention):
    from golden.importers import import_nvfp4

    e2m1, scales = _nvfp4_case()
    t = np.float32(0.0123)
    imp = import_nvfp4(_pack_e2m1_rows(e2m1), scales, t, convention=convention)
    layer = imp.layer
    assert (layer.format, layer.group, layer.scale_kind, layer.shape) == ("fp4_e2m1", 16, "int",
                                                                         (32, 8))
    assert layer.scale_bits == 19 and (layer.scale_exp == -10).all() and imp.exact
    producer = (e2m1.view(ml_dtypes.float4_e2m1fn).astype(np.float64)
                * np.repeat(scales.astype(np.float64), 16, axis=1)).T
    np.testing.assert_array_equal(dequantize_weights(layer), producer)
    np.testing.assert_array_equal(imp.reference, producer)
    want = float(t) if convention == "modelopt" else 1.0 / float(t)
    assert imp.tensor_scale == want
    np.testing.assert_array_equal(layer.scales, (scales.astype(np.float64) * 512).T)


def test_nvfp4_compressor_round_trips_through_the_importer():
    from golden.compress import compress_nvfp4
    from golden.importers import import_nvfp4

    w = np.random.default_rng(3).normal(size=(64, 8))
    layer, t = compress_nvfp4(w)
    codes = layer.codes.T  # [out, in]
    sc = np.zeros((8, 4), np.uint8)
    from golden.formats import encode

    sc[:] = encode("fp8_e4m3", layer.scales.T / 512.0)
    imp = import_nvfp4(_pack_e2m1_rows(codes), sc, np.float32(t))
    np.testing.assert_array_equal(imp.layer.codes, layer.codes)
    np.testing.assert_array_equal(imp.layer.scales, layer.scales)


def test_nvfp4_refusals():
    from golden.importers import import_nvfp4

    e2m1, scales = _nvfp4_case()
    packed = _pack_e2m1_rows(e2m1)
    codes = scales.view(np.uint8).copy()
    codes[1, 0] = 0x7F
    with pytest.raises(ValueError, match="block scale 0 of column 1 is an E4M3 NaN"):
        import_nvfp4(packed, codes, 1.0)
    with pytest.raises(ValueError, match=r"weight_scale must have shape \(8, 2\)"):
        import_nvfp4(packed, scales[:, :1], 1.0)
    with pytest.raises(ValueError, match="weight_scale must be E4M3"):
        import_nvfp4(packed, scales.astype(np.float32), 1.0)
    with pytest.raises(ValueError, match="packed E2M1 weights must be uint8"):
        import_nvfp4(packed.astype(np.int32), scales, 1.0)
    with pytest.raises(ValueError, match="weight_global_scale must be one positive"):
        import_nvfp4(packed, scales, 0.0, convention="compressed-tensors")
    with pytest.raises(ValueError, match="convention must be one of"):
        import_nvfp4(packed, scales, 1.0, convention="gguf")
    with pytest.raises(ValueError, match="scale_bits >= 19"):
        import_nvfp4(packed, scales, 1.0, scale_bits=16)


def test_read_safetensors_raw_reads_fp8_codes(tmp_path):
    from golden.importers import read_safetensors_raw

    e2m1, scales = _nvfp4_case()
    path = tmp_path / "m.safetensors"
    _write_safetensors(path, {"l.weight": ("U8", _pack_e2m1_rows(e2m1)),
                              "l.weight_scale": ("F8_E4M3", scales.view(np.uint8)),
                              "l.weight_scale_2": ("F32", np.array([0.5], np.float32))})
    t = read_safetensors_raw(path, ["l.weight", "l.weight_scale", "l.weight_scale_2", "nope"])
    assert set(t) == {"l.weight", "l.weight_scale", "l.weight_scale_2"}
    np.testing.assert_array_equal(t["l.weight_scale"], scales.view(np.uint8))
    assert t["l.weight_scale_2"].tolist() == [0.5]
    (tmp_path / "bad.safetensors").write_bytes(b"\x05\x00")
    with pytest.raises(ValueError, match="not a safetensors file"):
        read_safetensors_raw(tmp_path / "bad.safetensors", ["x"])
