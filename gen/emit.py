"""Verilog emission: ``<module>.v``, ``<module>.json`` (manifest) and ``<module>.vlt`` (waivers)."""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from hw.config import (
    FORMAT_BITS,
    FORMAT_CODES,
    MX_BLOCK,
    SCALE_CODES,
    SPARSITY_CODES,
    ArrayConfig,
    ConfigError,
)
from hw.core import (
    Core,
    core_drain_delay,
    core_latency,
    core_signature,
    output_latency,
    pe_module_name,
)
from hw.lanemap import lane_map
from hw.layouts import Layouts
from hw.pe import ProcessingElement
from hw.requant import RequantStage

__all__ = ["emit", "manifest", "WAIVED_WARNINGS", "EmitError", "axis_wrapper_verilog",
           "instance_template"]

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
            "acc_frac_bits": cfg.acc_frac_bits,
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
            "wgt_beat": _layout_json(lay.wgt_beat),
            "res_beat": _layout_json(lay.res_beat),
        },
        "ports": _ports(cfg),
        # How a weight slot byte holds lanes: lane j of a slot at bits [j·bits, (j+1)·bits).
        "slot_lanes": {fmt: {"bits": FORMAT_BITS[fmt], "lanes_per_slot": cfg.lanes_per_slot(fmt)}
                       for fmt in cfg.formats},
        "mx_block": MX_BLOCK,
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


class EmitError(ConfigError):
    """Emission would overwrite the files of a different configuration (message says why)."""


def _bytes(width: int) -> int:
    """``width`` rounded up to whole bytes (AXI4-Stream ``tdata`` is a multiple of 8 bits)."""
    return -(-width // 8) * 8


def _range(width: int) -> str:
    return f"[{width - 1}:0] " if width > 1 else ""


#: Streams of the core and their AXI4-Stream interface names (``s_axis_*`` in, ``m_axis_*`` out).
AXIS_STREAMS = (("act", "s_axis_act"), ("wgt", "s_axis_wgt"), ("prm", "s_axis_prm"),
                ("dsc", "s_axis_dsc"), ("res", "m_axis_res"))


def axis_wrapper_verilog(man: dict) -> str:
    """``<name>_axis``: the core under AXI4-Stream port names.

    ``aclk`` and ``aresetn`` (synchronous, active low, as AXI4-Stream has it) drive the core's
    ``clk`` and ``rst``. Input ``tdata`` are the core's payloads zero-padded to whole bytes
    (pad bits ignored); the result's ``tdata`` carries the values, ``tuser`` the per-column
    error bits and ``tlast`` the last row of a tile. ``mode`` and ``busy`` pass through.
    """
    core = man["module"]
    widths = {p["name"]: p["width"] for p in man["ports"]}
    res = man["layouts"]["res_beat"]
    val_w, err_w = res["value"]["width"], res["err"]["width"]
    ports = ["input aclk", "input aresetn", f"input {_range(widths['mode'])}mode",
             "output busy"]
    body = []
    conns = [".clk(aclk)", ".rst(~aresetn)", ".mode(mode)", ".busy(busy)"]
    for stream, axis in AXIS_STREAMS[:-1]:
        w = widths[f"{stream}__payload"]
        ports += [f"input {_range(_bytes(w))}{axis}_tdata", f"input {axis}_tvalid",
                  f"output {axis}_tready"]
        conns += [f".{stream}__payload({axis}_tdata[{w - 1}:0])",
                  f".{stream}__valid({axis}_tvalid)", f".{stream}__ready({axis}_tready)"]
        if _bytes(w) != w:
            body.append(f"  wire _unused_{stream}_pad = &{{1'b0, {axis}_tdata[{_bytes(w) - 1}:"
                        f"{w}]}};")
    axis = "m_axis_res"
    ports += [f"output {_range(_bytes(val_w))}{axis}_tdata",
              f"output {_range(err_w)}{axis}_tuser", f"output {axis}_tlast",
              f"output {axis}_tvalid", f"input {axis}_tready"]
    body.append(f"  wire {_range(widths['res__payload'])}res_payload;")
    body.append(f"  assign {axis}_tdata = "
                + (f"{{{_bytes(val_w) - val_w}'b0, res_payload[{val_w - 1}:0]}};"
                   if _bytes(val_w) != val_w else f"res_payload[{val_w - 1}:0];"))
    off = res["err"]["offset"]
    body.append(f"  assign {axis}_tuser = res_payload[{off + err_w - 1}:{off}];")
    body.append(f"  assign {axis}_tlast = res_payload[{res['last']['offset']}];")
    conns += [".res__payload(res_payload)", f".res__valid({axis}_tvalid)",
              f".res__ready({axis}_tready)"]
    lines = [f"// {core}_axis: {core} under AXI4-Stream port names (generated by python -m gen;"
             " see docs/INTERFACE.md).",
             "// Pad bits of the input tdata are ignored; act and wgt share one handshake:",
             "// assert tvalid without waiting for tready (AXI4-Stream's own rule).",
             f"module {core}_axis (", "  " + ",\n  ".join(ports), ");",
             *body,
             f"  {core} core (", "    " + ",\n    ".join(conns), "  );",
             "endmodule"]
    return "\n".join(lines) + "\n"


def instance_template(module: str, ports: list[tuple[str, str, int]]) -> str:
    """A Verilog instantiation template: one wire per port and the instance, to paste."""
    lines = [f"// Instantiation template of {module} (generated by python -m gen).",
             "// Declare or rename the wires, then paste the instance into your design."]
    for name, direction, width in ports:
        decl = f"wire {_range(width)}{name};"
        lines.append(f"{decl:40s} // {direction} {width}")
    lines.append(f"{module} u_{module} (")
    lines.append(",\n".join(f"  .{name}({name})" for name, _, _ in ports))
    lines.append(");")
    return "\n".join(lines) + "\n"


def _axis_ports(man: dict) -> list[tuple[str, str, int]]:
    """(name, direction, width) of the ports of `axis_wrapper_verilog`, from its text."""
    ports = []
    for line in axis_wrapper_verilog(man).splitlines():
        line = line.strip().rstrip(",")
        for direction in ("input", "output"):
            if line.startswith(direction + " "):
                rest = line[len(direction) + 1:]
                width = 1
                if rest.startswith("["):
                    msb, rest = rest[1:].split(":0] ", 1)
                    width = int(msb) + 1
                ports.append((rest, direction, width))
    return ports


def _check_overwrite(path: Path, cfg: ArrayConfig) -> None:
    """Refuse to replace the manifest (and so the Verilog) of a different configuration."""
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text()).get("config")
    except (OSError, ValueError):
        old = None
    if old is not None and old != cfg.to_dict():
        raise EmitError(f"{path} holds a different configuration of module {cfg.name!r}; "
                        "choose another --name or output directory, or pass --force")


def emit(cfg: ArrayConfig, out_dir: str | Path, *, axi_names: bool = False,
         force: bool = True) -> dict[str, Path]:
    """Write ``<name>.v``, ``<name>.json``, ``<name>.vlt`` and ``<name>_inst.vh`` into
    ``out_dir`` (with ``axi_names`` also ``<name>_axis.v`` and ``<name>_axis_inst.vh``).

    Without ``force``, files of a different configuration under the same name are not
    overwritten (`EmitError`).
    """
    out_dir = Path(out_dir)
    if not force:
        _check_overwrite(out_dir / f"{cfg.name}.json", cfg)
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
    man = manifest(cfg)
    paths["verilog"].write_text(text)
    paths["manifest"].write_text(json.dumps(man, indent=2, sort_keys=True) + "\n")
    paths["waivers"].write_text(waiver_text(paths["verilog"].name, pe_module_name(cfg)))
    paths["template"] = out_dir / f"{cfg.name}_inst.vh"
    paths["template"].write_text(instance_template(
        cfg.name, [(p["name"], p["direction"], p["width"]) for p in man["ports"]]))
    if axi_names:
        paths["axis"] = out_dir / f"{cfg.name}_axis.v"
        paths["axis"].write_text(axis_wrapper_verilog(man))
        paths["axis_template"] = out_dir / f"{cfg.name}_axis_inst.vh"
        paths["axis_template"].write_text(instance_template(f"{cfg.name}_axis",
                                                            _axis_ports(man)))
    return paths
