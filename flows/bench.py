"""``python -m flows.bench``: cycle-accurate throughput per mode on the RTL, beside the model.

For each representative mode a configuration enables, a random GEMM with ``M = 2·rows``,
``N = 2·cols`` (four tiles) and ``K = 1024`` (and 4096 with ``--long``) runs on the Verilator
model through `verif.runner.run_layer` and is checked bit-exact against the golden model.
Reported per mode: measured cycles, the analytic model's cycles (`flows.perf`), the ideal
``M·N·K / (rows·cols·step)``, utilization, dense-equivalent MACs per cycle, the speedup over
dense int8 measured in the same run on the same hardware, bits per weight (values, metadata,
scales) beside the format's floor, and GOPS at the synthesized Fmax when
``build/synth/<preset>-<device>.json`` exists. Results: ``build/bench/<preset>.json`` and
``.md``.

The modes run on the native harness (`verif.native`; ``--engine cocotb`` for the testbench).
Before them, one dense int8 GEMM (``M = N = compare_tiles · rows/cols``, ``K = min(4096,
k_max)``) runs on both engines, and the simulated cycles per second of each and their ratio are
printed and recorded (``engines``): per wall second of the simulation and per CPU second of
the simulator process (less dependent on a shared machine's load), with the check that both
gave the same results and the same cycle count.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from gen.cli import Parser, add_config_args, config_from_args
from golden.tables import MX_BLOCK
from hw.config import ConfigError, Mode

ROOT = Path(__file__).resolve().parent.parent

#: (label, mode, group) in report order; group None = per-channel (K), pow2 uses 32.
REPRESENTATIVE = [
    ("dense int8", Mode("int8", "dense", "none"), None),
    ("2:4 int8", Mode("int8", "2:4", "none"), None),
    ("1:4 int8", Mode("int8", "1:4", "none"), None),
    ("2:8 int8", Mode("int8", "2:8", "none"), None),
    ("4:8 int8", Mode("int8", "4:8", "none"), None),
    ("int4 per-channel", Mode("int4", "dense", "int"), None),
    ("uint4 g128", Mode("uint4", "dense", "int"), 128),
    ("2:4 int4", Mode("int4", "2:4", "int"), None),
    ("4:8 int4", Mode("int4", "4:8", "int"), None),
    ("int2 per-channel", Mode("int2", "dense", "int"), None),
    ("ternary per-channel", Mode("ternary", "dense", "int"), None),
    ("2:4 ternary", Mode("ternary", "2:4", "int"), None),
    ("fp4 (MXFP4) pow2", Mode("fp4_e2m1", "dense", "pow2"), None),
    ("fp4 pow2 + MXINT8 acts", Mode("fp4_e2m1", "dense", "pow2", mx_act=True), None),
    ("mxint8 pow2 + MXINT8 acts", Mode("mxint8", "dense", "pow2", mx_act=True), None),
]
BASELINE = "dense int8"


def _progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def select_modes(cfg, K: int, only: tuple[str, ...] | None = None):
    """The representative modes ``cfg`` can run at this K (or the named ones)."""
    out = []
    for label, mode, group in REPRESENTATIVE:
        g = group or (MX_BLOCK if mode.scale_kind == "pow2" else K)
        if only and label not in only and mode.name not in only:
            continue
        try:
            cfg.check_mode(mode, group=g, k=K)
        except ConfigError:
            continue
        out.append((label, mode, g))
    if not out and not only:  # a configuration outside the list: its first few modes
        for mode in cfg.modes[:6]:
            g = MX_BLOCK if mode.scale_kind == "pow2" else K
            try:
                cfg.check_mode(mode, group=g, k=K)
            except ConfigError:
                continue
            out.append((mode.name, mode, g))
    return out


def bits_entry(layer) -> dict:
    """Bits per weight of a layer by kind, with its storage and metadata floors."""
    from golden.metrics import bits_floor, bits_per_weight, metadata_floor
    return {**{k: round(v, 4) for k, v in bits_per_weight(layer).items()},
            "floor": round(bits_floor(layer), 4),
            "metadata_floor": round(metadata_floor(layer.n_sp, layer.m_sp), 4)}


def load_synth(tag: str, device: str) -> dict | None:
    """The synthesis report of ``tag`` on ``device``, None when not run."""
    path = ROOT / "build" / "synth" / f"{tag}-{device}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def compare_engines(cfg, *, tiles: int = 8, seed: int = 0, progress=_progress) -> dict:
    """One dense int8 GEMM on the native harness and on the cocotb testbench, same traffic.

    Returns cycles, wall seconds of the simulation and cycles/s per engine, the ratio, and
    whether results and cycle counts agree (and match golden).
    """
    from golden.gemm import gemm
    from verif.cases import random_case
    from verif.runner import run_layer

    mode = Mode("int8", "dense", "none")
    M, N, K = tiles * cfg.rows, tiles * cfg.cols, min(4096, cfg.k_max)
    layer, x, x_exp = random_case(seed, cfg, mode, M, K, N)
    y_ref, err_ref = gemm(x, layer, x_exp=x_exp, frac_bits=cfg.frac_bits, t_min=cfg.t_min,
                          t_max=cfg.t_max)
    out = {"M": M, "N": N, "K": K, "mode": mode.name}
    results = {}
    for engine in ("native", "cocotb"):
        progress(f"engines: {mode.name} M={M} N={N} K={K} on the {engine} engine ...")
        cpu0 = _child_cpu()
        res = run_layer(cfg, layer, x, x_exp=x_exp, engine=engine)
        cpu = _child_cpu() - cpu0
        rep = res.report
        results[engine] = res
        out[engine] = {"cycles": rep["cycles"], "sim_seconds": rep["sim_seconds"],
                       "cycles_per_second": rep["cycles"] / max(rep["sim_seconds"], 1e-9),
                       "cpu_seconds": round(cpu, 3),
                       "cycles_per_cpu_second": rep["cycles"] / max(cpu, 1e-9),
                       "matches_golden": bool(np.array_equal(res.y, y_ref)
                                              and np.array_equal(res.err, err_ref))}
    nat, coc = out["native"], out["cocotb"]
    out["speedup"] = nat["cycles_per_second"] / coc["cycles_per_second"]
    out["speedup_cpu"] = nat["cycles_per_cpu_second"] / coc["cycles_per_cpu_second"]
    out["same_cycles"] = nat["cycles"] == coc["cycles"]
    out["same_results"] = bool(np.array_equal(results["native"].y, results["cocotb"].y)
                               and np.array_equal(results["native"].err,
                                                  results["cocotb"].err))
    progress(f"engines: native {nat['cycles']} cycles in {nat['sim_seconds']:.2f} s = "
             f"{nat['cycles_per_second']:,.0f} cycles/s; cocotb {coc['cycles']} cycles in "
             f"{coc['sim_seconds']:.2f} s = {coc['cycles_per_second']:,.0f} cycles/s; native is "
             f"{out['speedup']:.0f}x faster (wall); simulator CPU time {nat['cpu_seconds']:.2f} s "
             f"vs {coc['cpu_seconds']:.2f} s = {out['speedup_cpu']:.0f}x; same cycles: "
             f"{out['same_cycles']}, same results: {out['same_results']}")
    return out


def _child_cpu() -> float:
    """User + system CPU seconds of this process's finished children (the simulators)."""
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_bench(cfg, *, tag: str, ks: list[int], device: str, synth_tag: str | None = None,
              seed: int = 0,
              only: tuple[str, ...] | None = None, m_tiles: int = 2, n_tiles: int = 2,
              engine: str = "native", compare_tiles: int | None = 16,
              progress=_progress) -> dict:
    """Run every selected mode at every K; return the report (see the module docstring)."""
    from flows.perf import ArrayTiming, estimate_mode
    from golden.gemm import gemm
    from verif.cases import random_case
    from verif.native import build_native
    from verif.runner import run_layer
    from verif.toolchain import build_model

    t_start = time.monotonic()
    progress(f"{tag}: building the Verilator models (cocotb: {sim_opt()}; native harness; "
             f"cached per configuration) ...")
    t0 = time.monotonic()
    model = build_model(cfg)
    build_s = time.monotonic() - t0
    native = build_native(cfg)
    manifest = json.loads(model.manifest.read_text())
    timing = ArrayTiming.from_manifest(manifest)
    engines = (compare_engines(cfg, tiles=compare_tiles, seed=seed, progress=progress)
               if compare_tiles else None)
    M, N = m_tiles * cfg.rows, n_tiles * cfg.cols
    rows = []
    for K in ks:
        modes = select_modes(cfg, K, only)
        if not modes:
            progress(f"{tag}: no representative mode runs at K={K}; skipped")
            continue
        for i, (label, mode, group) in enumerate(modes):
            layer, x, x_exp = random_case(seed + i, cfg, mode, M, K, N, group=group)
            y_ref, err_ref = gemm(x, layer, x_exp=x_exp, frac_bits=cfg.frac_bits,
                                  t_min=cfg.t_min, t_max=cfg.t_max)
            t0 = time.monotonic()
            res = run_layer(cfg, layer, x, x_exp=x_exp, engine=engine)
            wall = time.monotonic() - t0
            rep = res.report
            exact = bool(np.array_equal(res.y, y_ref) and np.array_equal(res.err, err_ref))
            est = estimate_mode(timing, M, N, K, mode.fmt, mode.sparsity, mode.scale_kind,
                                group=group, mx_act=mode.mx_act)
            row = {
                "label": label, "mode": mode.name, "format": mode.fmt,
                "sparsity": mode.sparsity, "scale_kind": mode.scale_kind,
                "mx_act": mode.mx_act, "group": group, "M": M, "N": N, "K": K,
                "step": rep["step_k"], "step_limit": timing.step_limiter(mode.fmt,
                                                                         mode.sparsity),
                "tiles": rep["tiles"], "beats": rep["beats"],
                "cycles": rep["cycles"], "model_cycles": est.cycles,
                "model_error": (est.cycles - rep["cycles"]) / rep["cycles"],
                "model_limiter": est.limiter,
                "ideal_cycles": rep["ideal_cycles"], "utilization": rep["utilization"],
                "macs_per_cycle": rep["macs_per_cycle"],
                "peak_macs_per_cycle": rep["step_k"] * cfg.rows * cfg.cols,
                "bits_per_weight": bits_entry(layer),
                "matches_golden": exact, "wall_seconds": round(wall, 2),
            }
            rows.append(row)
            progress(f"{tag} K={K} [{i + 1}/{len(modes)}] {label:24s} {rep['cycles']:6d} cycles "
                     f"(model {est.cycles}, ideal {rep['ideal_cycles']:.0f}), utilization "
                     f"{rep['utilization']:.3f}, {row['macs_per_cycle']:.1f} MAC/cycle"
                     f"{'' if exact else ', MISMATCH vs golden'} ({wall:.1f} s)")
    # Speedups against dense int8 of the same K, measured in this run.
    for row in rows:
        base = next((r for r in rows if r["label"] == BASELINE and r["K"] == row["K"]), None)
        row["speedup_vs_dense_int8"] = base["cycles"] / row["cycles"] if base else None
    return refresh({
        "tag": tag, "synth_tag": synth_tag or tag, "module": cfg.name,
        "config": cfg.to_dict(), "latency": manifest["latency"], "device": device,
        "sim_opt": sim_opt(), "model_build_seconds": round(build_s, 1),
        "engine": engine, "native_build_seconds": native.build_seconds, "engines": engines,
        "machine": machine(), "seconds": round(time.monotonic() - t_start, 1),
        "rows": rows,
        "decode_model": decode_table(timing, cfg, ks[-1]),
    })


def decode_table(timing, cfg, K: int, N: int = 4096, bws=(64, 128, 256, None)) -> list[dict]:
    """Model only: one token (M = 1) through a K × N layer behind a weight interface."""
    from flows.perf import estimate_mode, weight_bits_per_beat
    out = []
    for label, mode, group in select_modes(cfg, K):
        if mode.mx_act:
            continue
        wb = weight_bits_per_beat(timing, mode.fmt, mode.sparsity, mode.scale_kind, group)
        entry = {"label": label, "mode": mode.name,
                 "weight_bits_per_beat": timing.cols * wb["total"], "by_bw": {}}
        for bw in bws:
            est = estimate_mode(timing, 1, N, K, mode.fmt, mode.sparsity, mode.scale_kind,
                                group=group, weight_bw=bw)
            entry["by_bw"]["ports" if bw is None else str(bw)] = {
                "cycles": est.cycles, "macs_per_cycle": est.macs_per_cycle,
                "limiter": est.limiter}
        out.append(entry)
    return out


def machine() -> dict:
    """CPU model and count of the machine the bench ran on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def refresh(rep: dict) -> dict:
    """Re-read the synthesis result of a finished bench report (GOPS at the current Fmax)."""
    stag = rep.get("synth_tag", rep["tag"])
    synth = load_synth(stag, rep["device"])
    fmax = synth.get("fmax_mhz") if synth else None
    rep["synth"] = ({"fmax_mhz": fmax, "lut": synth.get("lut"), "ff": synth.get("ff"),
                     "dsp": synth.get("dsp"), "bram": synth.get("bram"),
                     "routed": synth.get("routed", True),
                     "file": f"build/synth/{stag}-{rep['device']}.json"}
                    if synth else None)
    for row in rep["rows"]:
        row.pop("gops", None)
        if fmax:
            row["gops"] = 2 * row["macs_per_cycle"] * fmax / 1e3
    return rep


def sim_opt() -> str:
    """The C++ optimisation of the Verilator model (``UPE_SIM_OPT`` or the toolchain's)."""
    opt = os.environ.get("UPE_SIM_OPT")
    return f"UPE_SIM_OPT={opt}" if opt else "verif.toolchain's default optimisation"


def _f(v, fmt="{:.3f}"):
    return "n/a" if v is None else fmt.format(v)


def markdown(rep: dict) -> str:
    """Render a bench report as Markdown."""
    cfg = rep["config"]
    syn = rep["synth"]
    lines = [f"# Bench: `{rep['tag']}` ({cfg['rows']}×{cfg['cols']} PEs, slots={cfg['slots']}, "
             f"window={cfg['window']})", ""]
    r0 = rep["rows"][0] if rep["rows"] else {"M": 0, "N": 0}
    lines.append(f"Verilator model ({rep['sim_opt']}), M = {r0['M']}, N = {r0['N']}"
                 f" ({r0['M'] // cfg['rows']}×{r0['N'] // cfg['cols']} tiles), "
                 f"random layers checked bit-exact against golden. Cycles from the first beat "
                 f"taken to the last result row taken. Machine: {rep['machine']['nproc']} × "
                 f"{rep['machine']['cpu']}; {rep['seconds']:.0f} s in all.")
    lines.append("")
    eng = rep.get("engines")
    if eng:
        nat, coc = eng["native"], eng["cocotb"]
        lines.append(f"Engines, measured in this run on `{eng['mode']}` M = {eng['M']}, N = "
                     f"{eng['N']}, K = {eng['K']}: native harness {nat['cycles']} cycles in "
                     f"{nat['sim_seconds']:.2f} s ({nat['cycles_per_second']:,.0f} cycles/s), "
                     f"cocotb {coc['cycles']} cycles in {coc['sim_seconds']:.2f} s "
                     f"({coc['cycles_per_second']:,.0f} cycles/s): **{eng['speedup']:.0f}×** "
                     f"in wall time; simulator CPU time {nat.get('cpu_seconds', 0):.2f} s vs "
                     f"{coc.get('cpu_seconds', 0):.2f} s: **{eng.get('speedup_cpu', 0):.0f}×**; "
                     f"same cycles: {'yes' if eng['same_cycles'] else 'NO'}, same results: "
                     f"{'yes' if eng['same_results'] else 'NO'}. The table below ran on the "
                     f"{rep.get('engine', 'native')} engine.")
        lines.append("")
    if syn:
        kind = ("routed" if syn.get("routed", True)
                else "nextpnr's post-placement estimate, not routed")
        lines.append(f"GOPS at the synthesized Fmax {syn['fmax_mhz']:.1f} MHz ({kind}; "
                     f"{syn['file']}; 2 ops per MAC, dense-equivalent).")
    else:
        stag = rep.get("synth_tag", rep["tag"])
        lines.append(f"GOPS: no synthesis result for {stag} on {rep['device']} — run "
                     f"`make synth PRESET={stag}`.")
    lines += ["", "| mode | K | step | cycles | model | ideal | utilization | MAC/cycle | "
              "× dense int8 | GOPS | bits/weight (values + meta + scales) | floor | exact |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in rep["rows"]:
        b = r["bits_per_weight"]
        lines.append(
            f"| {r['label']} (`{r['mode']}`) | {r['K']} | {r['step']} ({r['step_limit']}) | "
            f"{r['cycles']} | {r['model_cycles']} | {r['ideal_cycles']:.0f} | "
            f"{r['utilization']:.3f} | {r['macs_per_cycle']:.1f} / {r['peak_macs_per_cycle']}"
            f" | {_f(r['speedup_vs_dense_int8'], '{:.2f}×')} | {_f(r.get('gops'), '{:.2f}')} | "
            f"{b['total']:.3f} = {b['values']:.2f} + {b['metadata']:.3f} + {b['scales']:.3f} | "
            f"{b['floor']:.3f} | {'yes' if r['matches_golden'] else 'NO'} |")
    lines += ["", "step: dense-equivalent k per beat and what caps it (`lanes`: slots × lanes "
              "per slot × M/N; `window`: the activation window). Floor: value bits × density "
              "(log2 3 for ternary) + log2 C(M, N)/M metadata; scales excluded.", ""]
    dec = rep.get("decode_model") or []
    if dec:
        bws = list(dec[0]["by_bw"])
        lines += [f"## Decode (M = 1, N = 4096, K = {rep['rows'][-1]['K'] if rep['rows'] else ''})"
                  " — analytic model only",
                  "", "Dense-equivalent MAC/cycle behind a weight interface of W bits/cycle "
                  "(compressed stream: used codes + N:M indices + amortised scales); `ports` = "
                  "the core's full-width weight port. One token uses 1 of the rows.", "",
                  "| mode | weight bits/beat | " + " | ".join(
                      f"W={b}" if b != "ports" else "ports" for b in bws) + " |",
                  "|---|---:|" + "---:|" * len(bws)]
        for d in dec:
            cells = []
            for b in bws:
                e = d["by_bw"][b]
                tag = "" if e["limiter"] == "compute" else " (bw)"
                cells.append(f"{e['macs_per_cycle']:.1f}{tag}")
            lines.append(f"| {d['label']} | {d['weight_bits_per_beat']:.1f} | "
                         + " | ".join(cells) + " |")
        lines.append("")
        lines.append("(bw): weight bandwidth, not the MACs, limits that mode at that width.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Run the bench; return the exit status."""
    p = Parser(prog="python -m flows.bench", description=__doc__.splitlines()[0])
    add_config_args(p)
    p.add_argument("--long", action="store_true", help="also K = 4096")
    p.add_argument("--k", type=int, action="append", help="K values (default 1024)")
    p.add_argument("--modes", help="comma list of labels or mode names to run")
    p.add_argument("--device", default="ecp5-85k", help="synthesis result to read Fmax from")
    p.add_argument("--tag", help="result name (default: the preset name)")
    p.add_argument("-o", "--out", default=str(ROOT / "build" / "bench"), metavar="DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--refresh", action="store_true",
                   help="no simulation: re-read the synthesis result into the existing "
                        "build/bench/<preset>.json and rewrite the Markdown")
    p.add_argument("--sim-opt", metavar="-On",
                   help="C++ optimisation of the Verilator model (sets UPE_SIM_OPT; default: "
                        "verif.toolchain's choice per array size)")
    p.add_argument("--engine", choices=("native", "cocotb"), default="native",
                   help="simulation engine of the per-mode table (default native)")
    p.add_argument("--compare-tiles", type=int, default=16, metavar="T",
                   help="engine comparison on M = T·rows, N = T·cols, K = min(4096, k_max) "
                        "(default 16; 0 skips it)")
    p.add_argument("--m-tiles", type=int, default=2, help="M = m_tiles · rows (default 2)")
    p.add_argument("--n-tiles", type=int, default=2, help="N = n_tiles · cols (default 2)")
    args = p.parse_args(argv)
    from verif.runner import RunError
    if args.sim_opt:
        os.environ["UPE_SIM_OPT"] = args.sim_opt
    try:
        cfg = config_from_args(args)
        from flows.synth import default_tag
        synth_tag = default_tag(args, cfg)
        tag = args.tag or synth_tag
        if args.refresh:
            path = Path(args.out) / f"{tag}.json"
            try:
                rep = refresh(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"--refresh needs a bench result {path}: {exc}") from None
            path.write_text(json.dumps(rep, indent=2) + "\n")
            path.with_suffix(".md").write_text(markdown(rep))
            _progress(f"refreshed {path} and {path.with_suffix('.md')}")
            return 0
        ks = args.k or [1024]
        if args.long and 4096 not in ks:
            ks.append(4096)
        too_long = [k for k in ks if k > cfg.k_max]
        if too_long:
            _progress(f"{tag}: K={too_long} exceed k_max={cfg.k_max}; skipped")
            ks = [k for k in ks if k <= cfg.k_max]
        if not ks:
            raise ConfigError(f"no K to run (k_max={cfg.k_max})")
        only = tuple(s.strip() for s in args.modes.split(",")) if args.modes else None
        known = {label for label, _, _ in REPRESENTATIVE} | {m.name for _, m, _ in
                                                              REPRESENTATIVE}
        unknown = [o for o in only or () if o not in known]
        if unknown:
            raise ConfigError(f"unknown mode(s) {', '.join(unknown)}; choose from "
                              + ", ".join(label for label, _, _ in REPRESENTATIVE))
        if not any(select_modes(cfg, k, only) for k in ks):
            raise ConfigError(f"{tag}: none of the selected modes runs on this configuration")
        if args.m_tiles < 1 or args.n_tiles < 1:
            raise ConfigError("--m-tiles and --n-tiles must be at least 1")
        if args.compare_tiles < 0:
            raise ConfigError("--compare-tiles must be 0 (skip) or positive")
        rep = run_bench(cfg, tag=tag, ks=ks, device=args.device, synth_tag=synth_tag,
                        seed=args.seed, only=only, engine=args.engine,
                        compare_tiles=args.compare_tiles,
                        m_tiles=args.m_tiles, n_tiles=args.n_tiles)
    except (ConfigError, RunError) as exc:
        print(f"python -m flows.bench: error: {exc}", file=sys.stderr)
        return 2
    if not rep["rows"]:
        print("python -m flows.bench: error: no mode ran", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag}.json").write_text(json.dumps(rep, indent=2) + "\n")
    (out / f"{tag}.md").write_text(markdown(rep))
    _progress(f"wrote {out / (tag + '.json')} and {out / (tag + '.md')} "
              f"({rep['seconds']:.0f} s)")
    bad = [r["label"] for r in rep["rows"] if not r["matches_golden"]]
    eng = rep.get("engines")
    if eng and not (eng["same_cycles"] and eng["same_results"]
                    and eng["native"]["matches_golden"] and eng["cocotb"]["matches_golden"]):
        bad.append("the engine comparison (native vs cocotb)")
    if bad:
        print(f"python -m flows.bench: error: RTL differs from golden in {', '.join(bad)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
