"""``python -m flows.dse``: design-space exploration — area (synthesis) × throughput per mode.

Each point of a grid (rows × cols × slots × window × format set) is synthesized with
`flows.synth` (Yosys + nextpnr; placed only, Fmax from nextpnr's post-placement estimate,
unless ``--route``). The points are handed to Dask distributed (`verif.cluster`): a local
cluster of ``--jobs`` worker processes by default, ``--scheduler ADDR`` (or
``UPE_DASK_SCHEDULER``) to spread them over machines, ``--serial`` for none. Each point's
throughput in every runtime mode comes from the **analytic model** (`flows.perf`, validated
cycle-exact against the RTL by ``tests/test_perf.py``) for one GEMM (``M = N = 512,
K = 4096`` by default) at the point's synthesized Fmax. Results: ``build/dse/dse.csv`` (one
row per point and mode; a failed point is a row with its error, not a crash) and
``build/dse/dse.png`` (LUTs vs GOPS, the Pareto front, the dense-int8 baselines marked).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hw.config import ArrayConfig, ConfigError
from verif.cluster import add_cluster_args

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "build" / "dse"

#: Named format sets: the enabled formats, sparsity patterns, scale kinds and MX activations.
FORMAT_SETS = {
    "int8": dict(formats=("int8",), sparsity=("dense",), scale_kinds=("none", "int"),
                 mx_activations=False),
    "int8_2:4": dict(formats=("int8",), sparsity=("dense", "2:4"), scale_kinds=("none", "int"),
                     mx_activations=False),
    "int4_2:4": dict(formats=("int8", "int4"), sparsity=("dense", "2:4"),
                     scale_kinds=("none", "int"), mx_activations=False),
    "ternary": dict(formats=("int8", "ternary"), sparsity=("dense",),
                    scale_kinds=("none", "int"), mx_activations=False),
    "unified": dict(),  # every format, pattern and scale kind (the default preset's set)
}
BASELINE_SET = "int8"


@dataclass(frozen=True)
class Point:
    """One design point: array size, slots, window and enabled format set."""

    rows: int
    cols: int
    slots: int
    window: int
    fmt_set: str

    @property
    def tag(self) -> str:
        """Short name of the point, used for file names."""
        return (f"{self.fmt_set.replace(':', '')}-{self.rows}x{self.cols}"
                f"-s{self.slots}w{self.window}")

    def config(self) -> ArrayConfig:
        """The point's configuration."""
        name = "upe_dse_" + self.tag.replace("-", "_")
        return ArrayConfig(rows=self.rows, cols=self.cols, slots=self.slots,
                           window=self.window, name=name, **FORMAT_SETS[self.fmt_set])


def _points(arrays, combos) -> list[Point]:
    return [Point(r, c, s, w, f) for (r, c) in arrays for (s, w, f) in combos]


#: ``quick`` (4 points, about 30 minutes placed on 2 cores) compares format sets at one array
#: size. Small default grid: 12 points, 2×2 and 2×4 arrays (small enough that the whole grid places
#: in about an hour on 2 cores), every format set at its natural window plus the unified PE at
#: a narrower activation window (its 4× modes capped at 2×).
GRIDS = {
    # The dense int8 baseline against the compressed format sets on one 2x2 array.
    "quick": _points(((2, 2),), (
        (4, 4, "int8"), (4, 8, "int8_2:4"), (4, 16, "int4_2:4"), (4, 16, "ternary"))),
    "small": _points(((2, 2), (2, 4)), (
        (4, 4, "int8"), (4, 8, "int8_2:4"), (4, 16, "int4_2:4"), (4, 16, "ternary"),
        (4, 16, "unified"), (4, 8, "unified"))),
    "full": _points(((2, 2), (4, 4), (4, 8), (8, 8)), (
        (4, 4, "int8"), (8, 8, "int8"), (4, 8, "int8_2:4"), (4, 16, "int4_2:4"),
        (4, 16, "ternary"), (4, 16, "unified"), (4, 8, "unified"), (8, 32, "unified"))),
}


def load_grid(spec: str) -> list[Point]:
    """Load a named grid or a JSON file.

    The file holds ``{"arrays": [[r, c], ...], "points": [[slots, window, set], ...]}``.
    """
    if spec in GRIDS:
        return GRIDS[spec]
    path = Path(spec)
    try:
        data = json.loads(path.read_text())
        pts = _points([tuple(a) for a in data["arrays"]],
                      [tuple(p) for p in data["points"]])
    except OSError as exc:
        raise ConfigError(f"--grid {spec}: not a grid name ({', '.join(GRIDS)}) and not "
                          f"readable: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--grid {spec}: expected {{'arrays': [[rows, cols]...], "
                          f"'points': [[slots, window, format_set]...]}} ({exc})") from None
    for p in pts:
        if p.fmt_set not in FORMAT_SETS:
            raise ConfigError(f"--grid {spec}: unknown format set {p.fmt_set!r}; choose from "
                              f"{', '.join(FORMAT_SETS)}")
    return pts


def throughput_rows(point: Point, cfg: ArrayConfig, synth: dict, M: int, N: int,
                    K: int) -> list[dict]:
    """Analytic throughput of every runtime (format, sparsity) of a synthesized point."""
    from flows.perf import ArrayTiming, estimate_mode
    from gen.emit import manifest

    timing = ArrayTiming.from_manifest(manifest(cfg))
    fmax = synth.get("fmax_mhz") or 0.0
    out, seen = [], set()
    for mode in cfg.modes:
        key = (mode.fmt, mode.sparsity)
        if key in seen or mode.mx_act:
            continue
        seen.add(key)
        k = min(K, cfg.k_max)
        est = estimate_mode(timing, M, N, k, mode.fmt, mode.sparsity, mode.scale_kind)
        out.append({"mode": f"{mode.fmt}/{mode.sparsity}", "step": est.step,
                    "macs_per_cycle": round(est.macs_per_cycle, 2),
                    "utilization": round(est.utilization, 4),
                    "gops": round(2 * est.macs_per_cycle * fmax / 1e3, 3)})
    return out


FIELDS = ["tag", "fmt_set", "rows", "cols", "slots", "window", "status", "lut", "ff", "dsp",
          "bram", "fmax_mhz", "fmax_kind", "mode", "step", "macs_per_cycle", "utilization", "gops",
          "lut_per_mac_per_cycle", "synth_seconds", "error"]


def _step(msg: str) -> None:
    """Print a synthesis step of one point (not the 30-second heartbeats)."""
    if not re.search(r": \d+ s( \(.*\))?$", msg):
        print(f"[dse]   {msg}", flush=True)


def run_point(point: Point, device: str, out: Path, freq: float, reuse: bool,
              gemm: tuple[int, int, int], route: bool = False) -> list[dict]:
    """Synthesize one point (or reuse its result) and return its CSV rows."""
    from flows.synth import SynthError, synthesize

    base = {"tag": point.tag, "fmt_set": point.fmt_set, "rows": point.rows,
            "cols": point.cols, "slots": point.slots, "window": point.window}
    try:
        cfg = point.config()
    except ConfigError as exc:
        return [{**base, "status": "invalid", "error": str(exc)}]
    synth_dir = out / "synth"
    result = synth_dir / f"{point.tag}-{device}.json"
    synth = None
    if reuse and result.exists():
        try:
            synth = json.loads(result.read_text())
            if synth.get("config") != cfg.to_dict() or synth.get("routed", True) != route:
                synth = None
        except ValueError:
            synth = None
    if synth is None:
        try:
            synth = synthesize(cfg, device, synth_dir, tag=point.tag, freq=freq, route=route,
                               progress=_step)
        except SynthError as exc:
            return [{**base, "status": "no fit" if exc.kind == "fit" else "failed",
                     "error": str(exc)}]
        except Exception as exc:  # noqa: BLE001 - a failed point is reported, not fatal
            return [{**base, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}]
    rows = []
    for t in throughput_rows(point, cfg, synth, *gemm):
        rows.append({**base, "status": "ok", "lut": synth["lut"], "ff": synth["ff"],
                     "dsp": synth["dsp"], "bram": synth["bram"],
                     "fmax_mhz": round(synth["fmax_mhz"] or 0, 2),
                     "fmax_kind": "routed" if synth.get("routed", True) else "placed (estimate)",
                     **t,
                     "lut_per_mac_per_cycle": round(synth["lut"] / t["macs_per_cycle"], 2),
                     "synth_seconds": synth.get("seconds", {}).get("total"), "error": ""})
    return rows


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both (lower x, higher y)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y)
                        for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot(rows: list[dict], path: Path, device: str, gemm) -> None:
    """Plot area against throughput with the Pareto front."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    by_tag: dict[str, list[dict]] = {}
    for r in ok:
        by_tag.setdefault(r["tag"], []).append(r)
    fig, ax = plt.subplots(figsize=(9, 6))
    best, dense = [], []
    for tag, rs in by_tag.items():
        top = max(rs, key=lambda r: r["gops"])
        d8 = next((r for r in rs if r["mode"] == "int8/dense"), None)
        best.append((tag, top))
        if d8:
            dense.append((tag, d8))
    xs = [r["lut"] for _, r in best]
    ys = [r["gops"] for _, r in best]
    base = [(t, r) for t, r in best if r["fmt_set"] == BASELINE_SET]
    other = [(t, r) for t, r in best if r["fmt_set"] != BASELINE_SET]
    ax.scatter([r["lut"] for _, r in other], [r["gops"] for _, r in other], c="tab:blue",
               label="best mode of each point")
    ax.scatter([r["lut"] for _, r in base], [r["gops"] for _, r in base], marker="*", s=200,
               c="tab:red", label="dense_int8 baseline")
    ax.scatter([r["lut"] for _, r in dense], [r["gops"] for _, r in dense], facecolors="none",
               edgecolors="gray", label="dense int8 mode of each point")
    for (tag, r) in best:
        ax.annotate(f"{tag}\n{r['mode']}", (r["lut"], r["gops"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    if best:
        front = pareto(list(zip(xs, ys, strict=True)))
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", c="tab:green",
                label="Pareto front (best mode)")
    M, N, K = gemm
    ax.set_xlabel(f"LUTs ({device}, core only)")
    ax.set_ylabel(f"GOPS at Fmax (analytic model, M={M} N={N} K={K})")
    ax.set_title("Unified PE array: area vs throughput")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    """Run the sweep; return the exit status."""
    p = argparse.ArgumentParser(prog="python -m flows.dse", description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="small",
                   help=f"{' | '.join(GRIDS)} | FILE.json (default small: "
                        f"{len(GRIDS['small'])} points)")
    p.add_argument("--device", default="ecp5-85k")
    add_cluster_args(p, what="points", jobs=2,
                     jobs_help="workers of the local Dask cluster: synthesis runs at a time")
    p.add_argument("--freq", type=float, default=100.0)
    p.add_argument("--gemm", default="512,512,4096", help="M,N,K of the throughput GEMM")
    p.add_argument("--fresh", action="store_true", help="re-synthesize points already done")
    p.add_argument("--route", action="store_true",
                   help="route every point (about twice the time); default: place only and "
                        "use nextpnr's post-placement Fmax estimate")
    p.add_argument("-o", "--out", default=str(DEFAULT_OUT), metavar="DIR")
    args = p.parse_args(argv)
    try:
        from flows.synth import DEVICES
        if args.device not in DEVICES:
            raise ConfigError(f"unknown device {args.device!r}; choose from "
                              f"{', '.join(DEVICES)}")
        gemm = tuple(int(v) for v in args.gemm.split(","))
        if len(gemm) != 3 or min(gemm) < 1:
            raise ConfigError(f"--gemm needs M,N,K, not {args.gemm!r}")
        points = load_grid(args.grid)
        if args.jobs < 1:
            raise ConfigError("--jobs must be at least 1")
    except ValueError as exc:
        print(f"python -m flows.dse: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    from verif.cluster import run_points, scheduler_from

    scheduler = "serial" if args.serial else scheduler_from(args.scheduler)
    print(f"[dse] {len(points)} points on {args.device}; throughput from the analytic model "
          f"at each point's Fmax", flush=True)

    def describe(res) -> str:
        r0 = res.value[0]
        if r0["status"] != "ok":
            return f"{r0['tag']}: {r0['status']} ({r0['error'][:200]})"
        best = max((r.get("gops", 0) for r in res.value), default=0)
        return (f"{r0['tag']}: ok, {r0['lut']} LUT, {r0['fmax_mhz']} MHz, best {best:.2f} "
                f"GOPS")

    results = run_points(run_point, [(pt, args.device, out, args.freq, not args.fresh, gemm,
                                      args.route) for pt in points],
                         scheduler=scheduler, workers=args.jobs, label="dse", describe=describe)
    rows: list[dict] = []
    for pt, res in zip(points, results, strict=True):
        if res.error is not None:  # the point's task itself failed (worker lost, ...)
            rows.append({"tag": pt.tag, "fmt_set": pt.fmt_set, "rows": pt.rows,
                         "cols": pt.cols, "slots": pt.slots, "window": pt.window,
                         "status": "failed", "error": res.error})
        else:
            rows += res.value
    failed = sorted({r["tag"] for r in rows if r["status"] != "ok"})
    if failed:
        print(f"[dse] {len(failed)} of {len(points)} points failed: {', '.join(failed)}",
              flush=True)
    order = {pt.tag: i for i, pt in enumerate(points)}
    rows.sort(key=lambda r: (order.get(r["tag"], 0), r.get("mode", "")))
    csv_path = out / "dse.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    png = out / "dse.png"
    plot(rows, png, args.device, gemm)
    print(f"[dse] wrote {csv_path} and {png} ({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
