"""Element formats: every code against a hand table and ml_dtypes; encode rounding; E8M0."""

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
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_decode_every_code_matches_hand_table(fmt):
    codes = np.arange(FORMATS[fmt].n_codes, dtype=np.uint8)
    values, invalid = decode(fmt, codes)
    assert values.dtype == np.int64
    assert values.tolist() == HAND_TABLES[fmt]
    expected_invalid = [fmt == "ternary" and c == 0b10 for c in range(len(codes))]
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
