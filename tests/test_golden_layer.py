"""Layer files: validation of every class of broken file, deterministic save/load."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.compress import compress
from golden.formats import FORMATS
from golden.layer import Layer, LayerError, load_layer, save_layer, validate_layer


def base_arrays(fmt="int4", sparsity="2:4", kind="int", group=8):
    rng = np.random.default_rng(0)
    layer = compress(rng.normal(size=(32, 3)), fmt=fmt, sparsity=sparsity, group=group,
                     scale_kind=kind)
    return layer.to_arrays()


def write_npz(path, arrays):
    np.savez(path, **arrays)
    return path


def broken(change, **base):
    arrays = base_arrays(**base)
    change(arrays)
    return arrays


def _set(key, value):
    def change(a):
        a[key] = value
    return change


def _del(key):
    def change(a):
        del a[key]
    return change


def _swap_idx(a):
    a["idx"] = a["idx"].copy()
    a["idx"][[0, 1], 0] = a["idx"][[1, 0], 0]


def _dup_idx(a):
    a["idx"] = a["idx"].copy()
    a["idx"][1, 0] = a["idx"][0, 0]


def _code(value):
    def change(a):
        a["codes"] = a["codes"].copy()
        a["codes"][0, 0] = value
    return change


def _idx(value):
    def change(a):
        a["idx"] = a["idx"].copy()
        a["idx"][1, 0] = value
    return change


BROKEN = {
    # id: (expected key, change, base options)
    "missing version": ("version", _del("version"), {}),
    "missing format": ("format", _del("format"), {}),
    "missing sparsity": ("sparsity", _del("sparsity"), {}),
    "missing group": ("group", _del("group"), {}),
    "missing scale_kind": ("scale_kind", _del("scale_kind"), {}),
    "missing shape": ("shape", _del("shape"), {}),
    "missing codes": ("codes", _del("codes"), {}),
    "missing idx": ("idx", _del("idx"), {}),
    "missing scales": ("scales", _del("scales"), {}),
    "missing scale_exp": ("scale_exp", _del("scale_exp"), {}),
    "missing zeros": ("zeros", _del("zeros"), {"fmt": "uint4"}),
    "bad version": ("version", _set("version", np.array(2)), {}),
    "version not scalar": ("version", _set("version", np.array([1])), {}),
    "bad format": ("format", _set("format", np.array("int3")), {}),
    "format not a string": ("format", _set("format", np.array(4)), {}),
    "bad sparsity": ("sparsity", _set("sparsity", np.array("3:4")), {}),
    "bad scale kind": ("scale_kind", _set("scale_kind", np.array("fp8")), {}),
    "scale kind not allowed": ("scale_kind", _set("scale_kind", np.array("pow2")),
                               {"fmt": "uint4"}),
    "group not dividing K": ("group", _set("group", np.array(6)), {}),
    "group not multiple of M": ("group", _set("group", np.array(2)), {}),
    "pow2 group not 32": ("group", _set("group", np.array(16)),
                          {"kind": "pow2", "group": 32, "sparsity": "dense"}),
    "shape wrong dtype": ("shape", _set("shape", np.array([16, 3], np.int32)), {}),
    "shape wrong length": ("shape", _set("shape", np.array([16, 3, 1])), {}),
    "codes wrong dtype": ("codes", lambda a: a.update(codes=a["codes"].astype(np.int16)), {}),
    "codes out of range": ("codes", _code(16), {}),
    "N:M violation (3 of 4 rows)": ("codes", lambda a: a.update(
        codes=np.zeros((12, 3), np.uint8), idx=np.zeros((12, 3), np.uint8)), {}),
    "idx wrong dtype": ("idx", lambda a: a.update(idx=a["idx"].astype(np.int8)), {}),
    "idx not increasing": ("idx", _swap_idx, {}),
    "idx duplicated": ("idx", _dup_idx, {}),
    "idx >= M": ("idx", _idx(4), {}),
    "idx on dense": ("idx", _set("idx", np.zeros((32, 3), np.uint8)), {"sparsity": "dense"}),
    "scales wrong dtype": ("scales", lambda a: a.update(scales=a["scales"].astype(np.float32)),
                           {}),
    "scales wrong shape": ("scales", lambda a: a.update(scales=a["scales"][:1]), {}),
    "int scales beyond scale_bits": ("scales", lambda a: a.update(
        scales=np.full_like(a["scales"], 40000)), {}),
    "pow2 scales int32": ("scales", lambda a: a.update(scales=a["scales"].astype(np.int32)),
                          {"kind": "pow2", "group": 32, "sparsity": "dense"}),
    "scales on none": ("scales", _set("scales", np.ones((2, 3), np.int32)), {"kind": "none"}),
    "scale_exp wrong dtype": ("scale_exp", lambda a: a.update(
        scale_exp=a["scale_exp"].astype(np.int64)), {}),
    "scale_exp wrong shape": ("scale_exp", _set("scale_exp", np.zeros(4, np.int32)), {}),
    "zeros above 15": ("zeros", lambda a: a.update(zeros=np.full_like(a["zeros"], 16)),
                       {"fmt": "uint4"}),
    "zeros above 3 for uint2": ("zeros", lambda a: a.update(zeros=np.full_like(a["zeros"], 4)),
                                {"fmt": "uint2"}),
    "uint2 codes above 3": ("codes", _code(4), {"fmt": "uint2"}),
    "missing zeros for uint2": ("zeros", _del("zeros"), {"fmt": "uint2"}),
    "uint2 with pow2": ("scale_kind", _set("scale_kind", np.array("pow2")), {"fmt": "uint2"}),
    "zeros on int4": ("zeros", _set("zeros", np.zeros((2, 3), np.uint8)), {}),
    "bias wrong dtype": ("bias", _set("bias", np.zeros(3, np.float32)), {}),
    "out_mult too small": ("out_mult", lambda a: a.update(
        out_mult=np.full(3, 2**29, np.int32), out_shift=np.zeros(3, np.int32)), {}),
    "out_shift out of range": ("out_shift", lambda a: a.update(
        out_mult=np.full(3, 2**30, np.int32), out_shift=np.full(3, 31, np.int32)), {}),
    "out_shift alone": ("out_mult", _set("out_shift", np.zeros(3, np.int32)), {}),
    "out_zp wrong shape": ("out_zp", _set("out_zp", np.zeros(2, np.int32)), {}),
    "scale_bits out of range": ("scale_bits", _set("scale_bits", np.array(40)), {}),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_layer_file_names_the_key(case, tmp_path):
    key, change, base = BROKEN[case]
    path = write_npz(tmp_path / "broken.npz", broken(change, **base))
    with pytest.raises(LayerError, match=f"layer key '{key}'"):
        load_layer(path)


def test_unknown_keys_ignored_and_optional_keys_accepted(tmp_path):
    arrays = base_arrays()
    arrays.update(
        comment=np.array("hello"),
        bias=np.arange(3, dtype=np.int64),
        out_mult=np.full(3, 2**30, np.int32),
        out_shift=np.array([-31, 0, 30], np.int32),
        out_zp=np.array(-5, np.int32),
    )
    layer = load_layer(write_npz(tmp_path / "ok.npz", arrays))
    assert layer.out_zp.shape == () and layer.bias.tolist() == [0, 1, 2]


def test_ternary_invalid_code_is_not_a_file_error(tmp_path):
    arrays = base_arrays(fmt="ternary")
    arrays["codes"] = arrays["codes"].copy()
    arrays["codes"][0, 0] = 0b10
    layer = load_layer(write_npz(tmp_path / "t.npz", arrays))
    assert layer.codes[0, 0] == 0b10


def test_not_an_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    for path in (tmp_path / "a.npy", tmp_path / "junk.npz", tmp_path / "missing.npz"):
        with pytest.raises(LayerError, match="layer key 'file'"):
            load_layer(path)


def test_layer_properties_and_validate():
    layer = Layer.from_arrays(base_arrays())
    assert (layer.n_sp, layer.m_sp, layer.K, layer.N, layer.n_groups) == (2, 4, 32, 3, 4)
    validate_layer(layer)
    with pytest.raises(LayerError, match="'group'"):
        validate_layer(layer.copy(group=5))


def _saved_bytes(layer):
    buf = io.BytesIO()
    save_layer(buf, layer)
    return buf.getvalue()


CASES = [(f, k) for f, info in FORMATS.items() for k in info.allowed_scales]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(CASES),
    st.sampled_from(["dense", "1:4", "2:4", "2:8", "4:8"]),
    st.integers(1, 2),
    st.integers(1, 4),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_compressed_files_validate_and_round_trip_byte_identically(
    case, sparsity, n_blocks, N, per_channel, seed
):
    fmt, kind = case
    rng = np.random.default_rng(seed)
    K = 32 * n_blocks
    w = rng.standard_t(3, size=(K, N)) * 10.0 ** rng.integers(-3, 3)
    w[rng.random(w.shape) < 0.2] = 0.0
    group = 32 if kind == "pow2" else (K if per_channel else 8)
    layer = compress(w, fmt=fmt, sparsity=sparsity, group=group, scale_kind=kind)
    validate_layer(layer)
    first = _saved_bytes(layer)
    again = load_layer(io.BytesIO(first))
    assert _saved_bytes(again) == first
    for key, value in layer.to_arrays().items():
        restored = again.to_arrays()[key]
        assert restored.dtype == value.dtype and np.array_equal(restored, value), key
    # the same weights compress to the same bytes (canonical, deterministic)
    assert _saved_bytes(compress(w, fmt=fmt, sparsity=sparsity, group=group,
                                 scale_kind=kind)) == first


def test_compressed_arrays_follow_spec_dtypes():
    a = base_arrays(fmt="uint4")
    assert a["codes"].dtype == a["idx"].dtype == a["zeros"].dtype == np.uint8
    assert a["scales"].dtype == a["scale_exp"].dtype == np.int32
    assert a["shape"].dtype == np.int64 and a["shape"].tolist() == [32, 3]
    assert a["codes"].shape == (16, 3) and a["scales"].shape == (4, 3)
    p = base_arrays(kind="pow2", group=32, sparsity="dense", fmt="fp4_e2m1")
    assert p["scales"].dtype == np.uint8 and "scale_exp" not in p
