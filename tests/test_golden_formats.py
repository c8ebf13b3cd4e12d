"""Element formats: every code against a hand table and ml_dtypes; encode rounding; E8M0."""

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from golden.formats import (
    FORMATS,
    decode,
    decode_float,
    e8m0_to_float,
    encode,
    float_to_e8m0,
)

# code → integer the MAC sees, written out by hand from SPEC §2.
HAND_TABLES = {
    "int8": list(range(0, 128)) + list(range(-128, 0)),
    "mxint8": list(range(0, 128)) + list(range(-128, 0)),
    "int4": [0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1],
    "uint4": list(range(16)),
    "int2": [0, 1, -2, -1],
    "ternary": [0, 1, 0, -1],
    "fp4_e2m1": [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12],
    "uint2": [0, 1, 2, 3],
}


def _ocp_fp8(code: int, e_bits: int, m_bits: int, scale_log2: int) -> tuple[int, bool]:
    """One fp8 code, decoded literally from the OCP definition: (value · 2**scale_log2, invalid)."""
    bias = 2 ** (e_bits - 1) - 1
    sign = -1 if code >> 7 else 1
    exp = (code >> m_bits) & (2**e_bits - 1)
    man = code & (2**m_bits - 1)
    if e_bits == 4 and exp == 15 and man == 7:  # E4M3: S.1111.111 is NaN, no infinities
        return 0, True
    if e_bits == 5 and exp == 31:  # E5M2: Inf and NaN
        return 0, True
    if exp == 0:
        value = Fraction(man, 2**m_bits) * Fraction(2) ** (1 - bias)
    else:
        value = (1 + Fraction(man, 2**m_bits)) * Fraction(2) ** (exp - bias)
    integer = sign * value * 2**scale_log2
    assert integer.denominator == 1
    return int(integer), False


FP8 = {"fp8_e4m3": (4, 3, 9, ml_dtypes.float8_e4m3fn),
       "fp8_e5m2": (5, 2, 16, ml_dtypes.float8_e5m2)}
for _name, (_e, _m, _s, _) in FP8.items():
    HAND_TABLES[_name] = [_ocp_fp8(c, _e, _m, _s)[0] for c in range(256)]
INVALID = {name: [c for c in range(256) if _ocp_fp8(c, e, m, sc)[1]]
           for name, (e, m, sc, _) in FP8.items()}
INVALID["ternary"] = [0b10]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_decode_every_code_matches_hand_table(fmt):
    codes = np.arange(FORMATS[fmt].n_codes, dtype=np.uint8)
    values, invalid = decode(fmt, codes)
    assert values.dtype == np.int64
    assert values.tolist() == HAND_TABLES[fmt]
    expected_invalid = [c in INVALID.get(fmt, ()) for c in range(len(codes))]
    assert invalid.tolist() == expected_invalid


def test_format_info_fields():
    f = FORMATS["fp4_e2m1"]
    assert (f.bits, f.lanes_per_slot, f.signed, f.pow2_adj) == (4, 2, True, -1)
    assert (f.value_min, f.value_max) == (-12, 12)
    assert FORMATS["mxint8"].pow2_adj == -6
    assert FORMATS["uint4"].has_zero_point and not FORMATS["int4"].has_zero_point
    assert FORMATS["uint4"].allowed_scales == ("none", "int")
    assert FORMATS["ternary"].lanes_per_slot == 4 and FORMATS["int8"].lanes_per_slot == 1
    for name, info in FORMATS.items():
        values = HAND_TABLES[name]
        assert (info.value_min, info.value_max) == (min(values), max(values))


def test_fp4_matches_ml_dtypes_on_all_16_codes():
    codes = np.arange(16, dtype=np.uint8)
    reference = codes.view(ml_dtypes.float4_e2m1fn).astype(np.float64)
    ours = decode_float("fp4_e2m1", codes)
    np.testing.assert_array_equal(ours, reference)
    assert np.array_equal(np.signbit(ours), np.signbit(reference))  # −0 at code 0b1000
    np.testing.assert_array_equal(decode("fp4_e2m1", codes)[0], reference * 2)


def test_decode_float_scales():
    assert decode_float("mxint8", np.array([64, 0x80, 1], dtype=np.uint8)).tolist() == [
        1.0, -2.0, 1 / 64,
    ]
    assert decode_float("int4", np.array([9], dtype=np.uint8)).tolist() == [-7.0]


def test_decode_rejects_out_of_range_codes():
    with pytest.raises(ValueError, match="0..15"):
        decode("int4", np.array([16], dtype=np.uint8))
    with pytest.raises(ValueError, match="unknown format"):
        decode("int3", np.array([0], dtype=np.uint8))


@given(st.sampled_from(list(FORMATS)), st.data())
def test_encode_inverts_decode_on_every_valid_code(fmt, data):
    codes = data.draw(
        st.lists(st.integers(0, FORMATS[fmt].n_codes - 1), min_size=1, max_size=32)
    )
    codes = np.array(codes, dtype=np.uint8)
    _, invalid = decode(fmt, codes)
    codes = codes[~invalid]
    np.testing.assert_array_equal(encode(fmt, decode_float(fmt, codes)), codes)


def test_encode_round_half_even_and_saturation_by_hand():
    assert encode("int8", [0.5, 1.5, 2.5, -0.5, -1.5, 126.5, 300.0, -300.0]).tolist() == [
        0, 2, 2, 0, 0xFE, 126, 127, 0x80,
    ]
    assert encode("int4", [7.5, -8.5, -7.5, 2.5]).tolist() == [7, 8, 8, 2]  # 7, −8, −8, 2
    assert encode("uint4", [-3.0, 15.5, 14.5, 0.5]).tolist() == [0, 15, 14, 0]
    assert encode("int2", [1.5, -2.5, -0.5, 0.7]).tolist() == [1, 2, 0, 1]
    assert encode("ternary", [-1.0, 0.0, 1.0, 0.5, 1.5, -7.0]).tolist() == [3, 0, 1, 0, 1, 3]
    # mxint8 works on code/64: 1/128 is a tie between codes 0 and 1 → 0 (even), 3/128 → 2.
    assert encode("mxint8", [1 / 128, 3 / 128, 5.0, -5.0]).tolist() == [0, 2, 127, 0x80]


def test_encode_fp4_ties_and_saturation_by_hand():
    values = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, 1e9, -5.0, -1e9, -0.1]
    # ties go to the even mantissa: 0.25→0, 0.75→1, 1.25→1, 1.75→2, 2.5→2, 3.5→4, 5→4
    expected = [0, 2, 2, 4, 4, 6, 6, 7, 7, 0b1110, 0b1111, 0b1000]
    assert encode("fp4_e2m1", values).tolist() == expected


def test_encode_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        encode("int8", [np.nan])


def test_e8m0_every_code_matches_ml_dtypes():
    codes = np.arange(256, dtype=np.uint8)
    reference = codes.view(ml_dtypes.float8_e8m0fnu).astype(np.float64)
    ours = e8m0_to_float(codes)
    np.testing.assert_array_equal(ours[:255], reference[:255])
    assert np.isnan(ours[255]) and np.isnan(reference[255])
    assert ours[127] == 1.0 and ours[0] == 2.0**-127 and ours[254] == 2.0**127


def test_float_to_e8m0_exact_powers_and_specials():
    codes = np.arange(255, dtype=np.uint8)
    np.testing.assert_array_equal(float_to_e8m0(e8m0_to_float(codes)), codes)
    assert float_to_e8m0([0.0, -1.0, np.inf, np.nan, 2.0**128]).tolist() == [255] * 5


@given(st.floats(min_value=2.0**-127, max_value=2.0**127 * 1.49, allow_nan=False))
def test_float_to_e8m0_matches_ml_dtypes(x):
    reference = np.array([x]).astype(ml_dtypes.float8_e8m0fnu).view(np.uint8)
    assert float_to_e8m0([x]).tolist() == reference.tolist()


def test_float_to_e8m0_rounds_half_up_in_mantissa():
    assert float_to_e8m0([1.0, 1.49, 1.5, 3.0, 0.75]).tolist() == [127, 127, 128, 129, 127]


@pytest.mark.parametrize("fmt", list(FP8))
def test_fp8_every_code_matches_ml_dtypes(fmt):
    """All 256 codes: value, sign of zero, NaN and Inf against ml_dtypes; integer = value·2**s."""
    e_bits, m_bits, scale_log2, dtype = FP8[fmt]
    codes = np.arange(256, dtype=np.uint8)
    reference = codes.view(dtype).astype(np.float64)
    ours = decode_float(fmt, codes)
    np.testing.assert_array_equal(ours, reference)  # NaN == NaN here, ±inf compared
    assert np.array_equal(np.signbit(ours), np.signbit(reference))
    values, invalid = decode(fmt, codes)
    assert invalid.tolist() == (~np.isfinite(reference)).tolist()
    finite = np.isfinite(reference)
    np.testing.assert_array_equal(values[finite], reference[finite] * 2.0**scale_log2)
    assert (values[~finite] == 0).all()  # NaN / Inf count 0
    assert values[0x80] == 0 and decode_float(fmt, [0x80])[0] == 0.0  # −0 = 0
    assert FORMATS[fmt].pow2_adj == -scale_log2


def test_fp8_ranges_and_specials_by_hand():
    e4, e5 = FORMATS["fp8_e4m3"], FORMATS["fp8_e5m2"]
    assert (e4.value_max, e4.symmetric_max) == (448 * 2**9, 448.0)
    assert (e5.value_max, e5.symmetric_max) == (57344 * 2**16, 57344.0)
    assert e4.invalid_codes == (0x7F, 0xFF)
    assert len(e5.invalid_codes) == 8 and 0x7C in e5.invalid_codes and 0xFC in e5.invalid_codes
    # subnormals are exact: the smallest is 2**-9 (E4M3) and 2**-16 (E5M2), integer 1
    assert decode("fp8_e4m3", [0x01, 0x07, 0x08, 0x7E])[0].tolist() == [1, 7, 8, 229376]
    assert decode("fp8_e5m2", [0x01, 0x03, 0x04, 0x7B])[0].tolist() == [1, 3, 4, 57344 * 2**16]
    assert np.isposinf(decode_float("fp8_e5m2", [0x7C])[0])
    assert np.isneginf(decode_float("fp8_e5m2", [0xFC])[0])
    assert np.isnan(decode_float("fp8_e4m3", [0x7F, 0xFF])).all()


def _rne_fp8(x: float, fmt: str) -> int:
    """Independent RNE encoder: nearest finite code by exhaustive search, ties to even code."""
    codes = np.arange(256, dtype=np.uint8)
    values = codes.view(FP8[fmt][3]).astype(np.float64)
    ok = np.isfinite(values) & ~((values == 0) & np.signbit(values))
    dist = np.abs(values[ok] - x)
    best = codes[ok][dist == dist.min()]
    if len(best) > 1:  # a tie between neighbours: the even mantissa (even code)
        best = best[best % 2 == 0]
    code = int(best[0])
    return 0x80 if code == 0 and np.signbit(x) else code


@pytest.mark.parametrize("fmt", list(FP8))
def test_fp8_encode_ties_subnormals_and_saturation(fmt):
    codes = np.arange(256, dtype=np.uint8)
    values = decode_float(fmt, codes)
    finite = np.sort(np.unique(values[np.isfinite(values)]))
    mids = (finite[:-1] + finite[1:]) / 2  # every tie between neighbouring values
    expected = [_rne_fp8(v, fmt) for v in mids]
    assert encode(fmt, mids).tolist() == expected
    top = FORMATS[fmt].symmetric_max
    assert encode(fmt, [top * 4, -top * 4, np.inf, -np.inf]).tolist() == [
        int(encode(fmt, [top])[0]), int(encode(fmt, [-top])[0]),
        int(encode(fmt, [top])[0]), int(encode(fmt, [-top])[0])]
    assert encode(fmt, [-0.0, 0.0]).tolist() == [0x80, 0]


@given(st.sampled_from(list(FP8)), st.floats(-7e4, 7e4, allow_nan=False))
def test_fp8_encode_matches_an_exhaustive_rne(fmt, x):
    assert int(encode(fmt, [x])[0]) == _rne_fp8(float(np.clip(x, -FORMATS[fmt].symmetric_max,
                                                              FORMATS[fmt].symmetric_max)), fmt)


def test_activation_format_names():
    from golden.formats import activation_format

    assert activation_format(None) is None and activation_format("int8") is None
    assert activation_format(None, x_exp=np.zeros(1)) == "mxint8"
    assert activation_format("fp8_e5m2") == "fp8_e5m2"
    with pytest.raises(ValueError, match="unknown activation format 'int4'"):
        activation_format("int4")
    with pytest.raises(ValueError, match="plain int8"):
        activation_format("int8", x_exp=np.zeros(1))


def test_pow2_exponent_adds_adj_w_and_adj_x():
    """SPEC §4: adj = adj_w + adj_x for every weight × activation format."""
    from golden.formats import MX_ACT_FORMATS, pow2_exponent, pow2_weight_exponent

    adj_w = {"fp4_e2m1": -1, "mxint8": -6, "fp8_e4m3": -9, "fp8_e5m2": -16, "int8": 0}
    adj_x = {"mxint8": -6, "fp8_e4m3": -9, "fp8_e5m2": -16}
    assert set(adj_x) == set(MX_ACT_FORMATS)
    for w, aw in adj_w.items():
        assert pow2_exponent(w, 130) == 3 + aw
        for x, ax in adj_x.items():
            assert pow2_exponent(w, 130, 125, x) == 3 - 2 + aw + ax
            assert pow2_weight_exponent(w, pow2_exponent(w, 130, 125, x), 125, x) == 130
        assert pow2_exponent(w, 130, 125) == 3 - 2 + aw - 6  # default: MXINT8
