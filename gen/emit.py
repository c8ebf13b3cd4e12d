"""Verilog emission: ``<module>.v``, ``<module>.json`` (manifest) and ``<module>.vlt`` (waivers)."""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from hw.config import FORMAT_CODES, SCALE_CODES, SPARSITY_CODES, ArrayConfig
from hw.core import (
    Core,
    RequantStage,
    core_drain_delay,
    core_latency,
    core_signature,
    output_latency,
    pe_module_name,
)
from hw.lanemap import lane_map
from hw.layouts import Layouts
from hw.pe import ProcessingElement

__all__ = ["emit", "manifest", "WAIVED_WARNINGS"]

MANIFEST_VERSION = 1

#: Warning classes Yosys-generated Verilog is known to trip under ``verilator -Wall``; waived
#: for the generated files only, never globally.
WAIVED_WARNINGS = (
    "WIDTHEXPAND",      # Yosys leaves operands at their natural width
    "WIDTHTRUNC",
    "UNUSEDSIGNAL",     # unused bits of internal nets and ports of submodules
    "PROCASSINIT",      # Yosys initialises registers in declarations and resets them in processes
    "CASEINCOMPLETE",   # Amaranth switches without a default arm keep the comb default value
    "DECLFILENAME",     # hierarchical module names (`top.sub`) in one file
)


def _layout_json(layout) -> dict | int:
    from amaranth.lib import data
    if isinstance(layout, data.StructLayout):
        return {name: {"offset": f.offset, "width": f.width, "signed": f.shape.signed
                       if hasattr(f.shape, "signed") else False,
                       "layout": _layout_json(f.shape)
                       if isinstance(f.shape, data.Layout) else None}
                for name, f in layout}
    if isinstance(layout, data.ArrayLayout):
        return {"array": layout.length, "elem_width": data.Layout.cast(layout.elem_shape).size
                if isinstance(layout.elem_shape, data.Layout) else layout.elem_shape.width}
    return layout.size


def _ports(cfg: ArrayConfig) -> list[dict]:
    """Verilog ports of the core: name (``stream__field``), direction, width."""
    ports = [{"name": "clk", "direction": "input", "width": 1},
             {"name": "rst", "direction": "input", "width": 1}]
    for path, member in core_signature(cfg).members.flatten():
        if member.is_signature:
            continue
        ports.append({
            "name": "__".join(str(p) for p in path),
            "direction": "input" if member.flow == wiring.In else "output",
            "width": _width(member.shape),
        })
    return ports


def _width(shape) -> int:
    from amaranth.hdl import Shape
    from amaranth.lib import data
    if isinstance(shape, data.Layout):
        return shape.size
    return Shape.cast(shape).width


def manifest(cfg: ArrayConfig) -> dict:
    """Everything golden, cocotb and synthesis need to know about a generated core."""
    lay = Layouts(cfg)
    modes = []
    for mode in cfg.modes:
        modes.append({
            "name": mode.name, "format": mode.fmt, "sparsity": mode.sparsity,
            "scale_kind": mode.scale_kind, "mx_act": mode.mx_act,
            "step_k": cfg.step_k(mode.fmt, mode.sparsity),
            "lanes_used": cfg.lanes_used(mode.fmt, mode.sparsity),
            "peak_macs_per_cycle": cfg.step_k(mode.fmt, mode.sparsity) * cfg.rows * cfg.cols,
        })
    return {
        "manifest_version": MANIFEST_VERSION,
        "module": cfg.name,
        "config": cfg.to_dict(),
        "derived": {
            "acc_bits": cfg.acc_bits,
            "frac_bits": cfg.frac_bits,
            "min_acc_bits": cfg.min_acc_bits,
            "p_bits": cfg.p_bits,
            "beat_bits": cfg.beat_bits,
            "idx_bits": cfg.idx_bits,
            "max_lanes": cfg.max_lanes,
            "quarter_value_bits": list(cfg.quarter_value_bits),
            "scale_field_bits": cfg.scale_field_bits,
            "pow2_shift_range": [cfg.shift_min, cfg.shift_max],
            "t_window": [cfg.t_min, cfg.t_max],
        },
        "rows": cfg.rows,
        "cols": cfg.cols,
        "acc_bits": cfg.acc_bits,
        "frac_bits": cfg.frac_bits,
        "latency": {
            "pe": ProcessingElement.latency,
            "drain_delay": core_drain_delay(cfg),
            "first_result": core_latency(cfg),
            "requant": RequantStage.latency if cfg.requant else 0,
            "output": output_latency(cfg),
        },
        "codes": {"format": FORMAT_CODES, "sparsity": SPARSITY_CODES, "scale": SCALE_CODES},
        # The co-designed lane order (hw.lanemap): per mode, the multiplier (slot, quarter) of
        # every stored slot of a beat and the window position of every beat-local k.
        "lane_map": lane_map(cfg).to_json(),
        "layouts": {
            "mode": _layout_json(lay.mode),
            "col_params": _layout_json(lay.col_params),
            "act_beat": _layout_json(lay.act_beat),
            "packet": _layout_json(lay.packet),
            "res_beat": _layout_json(lay.res_beat),
        },
        "ports": _ports(cfg),
        "modes": modes,
        "peak_macs_per_cycle": cfg.peak_macs_per_cycle,
    }


def waiver_text(module_file: str, pe_module: str) -> str:
    lines = ["`verilator_config",
             "// Known warning classes of Yosys-generated Verilog, waived for this file only."]
    for rule in WAIVED_WARNINGS:
        lines.append(f'lint_off -rule {rule} -file "*{module_file}"')
    lines += ["// Keep the PE one module: compile it once, not rows x cols times.",
              f'no_inline -module "{pe_module}"']
    return "\n".join(lines) + "\n"


def emit(cfg: ArrayConfig, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<name>.v``, ``<name>.json`` and ``<name>.vlt`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    core = Core(cfg, pe_instances=True)
    text = verilog.convert(core, name=cfg.name, emit_src=False)
    # The PE is one module, instantiated rows × cols times by the core.
    text += "\n" + verilog.convert(ProcessingElement(cfg), name=pe_module_name(cfg),
                                   emit_src=False)
    paths = {
        "verilog": out_dir / f"{cfg.name}.v",
        "manifest": out_dir / f"{cfg.name}.json",
        "waivers": out_dir / f"{cfg.name}.vlt",
    }
    paths["verilog"].write_text(text)
    paths["manifest"].write_text(json.dumps(manifest(cfg), indent=2, sort_keys=True) + "\n")
    paths["waivers"].write_text(waiver_text(paths["verilog"].name, pe_module_name(cfg)))
    return paths
