"""The generator configuration: validation, derived widths, presets, CLI errors."""

import json
import subprocess
import sys

import pytest

from gen.presets import PRESETS, preset
from hw.config import ArrayConfig, ConfigError, Mode


@pytest.mark.parametrize("changes, message", [
    ({"rows": 0}, "rows must be at least 1"),
    ({"cols": -3}, "cols must be at least 1"),
    ({"rows": 2.5}, "rows must be an integer"),
    ({"slots": 3}, "slots must be a power of two"),
    ({"window": 64}, "window must be at most 32"),
    ({"formats": ()}, "formats must enable at least one"),
    ({"formats": ("int8", "int9")}, "unknown entry 'int9'"),
    ({"sparsity": ("3:4",)}, "unknown entry '3:4'"),
    ({"scale_kinds": ("float",)}, "unknown entry 'float'"),
    ({"formats": ("int8", "int8")}, "lists an entry twice"),
    ({"window": 4, "sparsity": ("dense", "2:8")}, "sparsity 2:8 needs window >= 8"),
    ({"slots": 1, "window": 8, "formats": ("int8",), "sparsity": ("4:8",),
      "mx_activations": False}, "needs at least 4 lanes"),
    ({"acc_bits": 30}, "could overflow"),
    ({"t_min": 5, "t_max": 1}, "t_min (5) must not exceed t_max (1)"),
    ({"scale_kinds": ("none", "int")}, "mx_activations needs the pow2"),
    ({"formats": ("uint4",), "scale_kinds": ("pow2",)}, "cannot use any enabled scale kind"),
    ({"frac_bits": 40, "t_max": 40, "k_max": 1 << 20}, "more than 64"),
    ({"name": "has space"}, "Verilog identifier"),
    ({"mx_activations": 1}, "must be true or false"),
])
def test_contradictions_are_refused(changes, message):
    base = ArrayConfig().to_dict()
    base.update(changes)
    base["acc_bits"] = changes.get("acc_bits")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ArrayConfig.from_dict(base)


def test_unknown_parameter_is_named():
    with pytest.raises(ConfigError, match="unknown configuration parameter.*colums"):
        ArrayConfig.from_dict({"colums": 4})


def test_derived_accumulator_is_minimal_and_safe():
    cfg = ArrayConfig()
    # int scales: K · 128 · 128 · 2^15 per column; pow2: 128 groups · 2^19 · 2^24.
    int_bound = (4096 * 128 * 128) << 15
    pow2_bound = (4096 // 32) * (32 * 128 * 128) << (cfg.t_max + cfg.frac_bits)
    assert cfg.acc_bits == max(int_bound, pow2_bound).bit_length() + 1
    assert ArrayConfig(acc_bits=cfg.acc_bits).acc_bits == cfg.acc_bits
    wider = ArrayConfig(acc_bits=cfg.acc_bits + 4)
    assert wider.acc_bits == cfg.acc_bits + 4


def test_accumulator_fraction_bits_cover_the_right_shifts():
    """pow2's most negative shift sets the fraction bits below the accumulator's result."""
    cfg = ArrayConfig()
    assert cfg.shift_min == cfg.t_min + cfg.frac_bits == -16
    assert cfg.acc_frac_bits == 16
    assert ArrayConfig(t_min=-24).acc_frac_bits == 8
    assert ArrayConfig(t_min=-16).acc_frac_bits == 0  # every shift a left one
    assert ArrayConfig(scale_kinds=("none", "int"), mx_activations=False).acc_frac_bits == 0


def test_single_mode_presets_size_their_lanes():
    ternary = preset("bitnet_ternary")
    assert ternary.quarter_value_bits == (2, 2, 2, 2)
    assert ternary.idx_bits == 0
    dense = preset("dense_int8")
    assert dense.quarter_value_bits == (8, 0, 0, 0)
    mx = preset("mxfp4")
    assert mx.quarter_value_bits == (5, 0, 5, 0)
    full = preset("default")
    assert full.quarter_value_bits == (8, 2, 5, 2)
    assert full.idx_bits == 3


def test_default_throughput_ratios():
    cfg = preset("default")
    base = cfg.step_k("int8", "dense")
    assert cfg.step_k("int4", "dense") == 2 * base
    assert cfg.step_k("fp4_e2m1", "dense") == 2 * base
    assert cfg.step_k("int8", "2:4") == 2 * base
    assert cfg.step_k("ternary", "dense") == 4 * base
    assert cfg.step_k("int2", "dense") == 4 * base
    assert cfg.step_k("int4", "2:4") == 4 * base
    assert preset("dense_int8").step_k("int8") == base


@pytest.mark.parametrize("name", list(PRESETS))
def test_json_round_trip(name, tmp_path):
    cfg = PRESETS[name]
    assert ArrayConfig.from_dict(json.loads(cfg.to_json())) == cfg
    path = tmp_path / "c.json"
    path.write_text(cfg.to_json())
    assert ArrayConfig.from_file(path) == cfg


def test_toml_override(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('rows = 3\ncols = 5\nformats = ["int8", "int4"]\n'
                    'scale_kinds = ["none", "int"]\nmx_activations = false\n')
    cfg = ArrayConfig.from_file(path, base=preset("default"))
    assert (cfg.rows, cfg.cols, cfg.formats) == (3, 5, ("int8", "int4"))


def test_check_mode_messages():
    cfg = preset("dense_int8")
    with pytest.raises(ConfigError, match="format int4 is not enabled"):
        cfg.check_mode(Mode("int4"))
    with pytest.raises(ConfigError, match="K=8192 exceeds"):
        cfg.check_mode(Mode("int8"), k=8192)
    with pytest.raises(ConfigError, match="pow2 scales need group 32"):
        preset("default").check_mode(Mode("fp4_e2m1", "dense", "pow2"), group=64)


@pytest.mark.parametrize("args, message", [
    (["--rows", "0"], "rows must be at least 1"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--formats", "int8,int7"], "unknown entry 'int7'"),
    (["--acc-bits", "12"], "could overflow"),
    (["--t-window", "4:-4"], "must not exceed"),
])
def test_cli_refuses_without_traceback(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gen", "verilog", *args, "-o", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dsp_lanes_choose_the_widest_lanes_first():
    tiny = preset("tiny").replace(dsp_lanes=None)
    assert tiny.hard_lanes == {(s, 0) for s in range(tiny.slots)}  # the int8 lanes
    assert tiny.hard_lane_min_bits == 8
    eight = tiny.replace(dsp_lanes=8)
    assert eight.hard_lanes == {(s, q) for s in range(tiny.slots) for q in (0, 2)}
    assert eight.hard_lane_min_bits == tiny.quarter_value_bits[2]
    assert tiny.replace(dsp_lanes=0).hard_lane_min_bits is None
    int8_only = tiny.replace(formats=("int8",), sparsity=("dense",), scale_kinds=("none",),
                             mx_activations=False, window=4)
    assert int8_only.hard_lanes == set(int8_only.lanes)  # "at most": fewer lanes, all of them
    with pytest.raises(ConfigError, match="dsp_lanes"):
        tiny.replace(dsp_lanes=4 * tiny.slots + 1)


def test_fp8_activations_pairs_and_refusals():
    """fp8 activations: validated, need MX activations, and run only the pairs whose exact
    accumulator fits 64 bits (`ArrayConfig.x_pairs`); an activation format with no pair is
    refused, and so is a mode of an excluded pair."""
    mx = preset("mxfp8")
    assert mx.x_pairs == (("fp4_e2m1", "fp8_e4m3"), ("fp4_e2m1", "fp8_e5m2"),
                          ("fp8_e4m3", "fp8_e4m3"))
    assert mx.acc_bits <= 64 and mx.x_value_bits == 12 and mx.x_coarse_max == 3
    names = {m.name for m in mx.modes}
    assert "fp8_e4m3-2:4-pow2-mxfp8_e4m3" in names
    assert not any(n.startswith("fp8_e5m2") and "mxfp8" in n for n in names)
    with pytest.raises(ConfigError, match="fp8_e5m2 weights with fp8_e5m2 activations"):
        mx.check_mode(Mode("fp8_e5m2", "dense", "pow2", mx_act=True, x_format="fp8_e5m2"))
    with pytest.raises(ConfigError, match="need their block exponents"):
        mx.check_mode(Mode("fp8_e4m3", "dense", "pow2", x_format="fp8_e4m3"))
    with pytest.raises(ConfigError, match="not enabled in this configuration"):
        preset("default").check_mode(Mode("int8", "dense", "pow2", mx_act=True,
                                          x_format="fp8_e4m3"))
    with pytest.raises(ConfigError, match="fp8_activations needs mx_activations"):
        ArrayConfig(fp8_activations=("fp8_e4m3",), mx_activations=False,
                    scale_kinds=("none", "int"))
    with pytest.raises(ConfigError, match="fp8_activations: unknown entry 'fp8_e3m4'"):
        ArrayConfig(fp8_activations=("fp8_e3m4",))
    with pytest.raises(ConfigError, match="fp8_e5m2 pairs with no enabled weight format"):
        ArrayConfig(formats=("int8",), fp8_activations=("fp8_e5m2",))
