"""Soak test: many random GEMMs with random stream traffic on the simulated core.

``python -m verif.soak [--preset tiny] [--macs 1e6] [--seed S] [--jobs N] [--modes GLOB]``
(``make soak``). For every runtime mode of the configuration (format × sparsity × scale kind ×
MXINT8 activations) it streams random GEMMs — random shapes that tile and do not, random group
sizes, raw or requantized output, edge values (`verif.cases`), now and then an error scenario
— until at least ``--macs`` dense-equivalent MACs (``M·N·K``) of that mode have run, each
simulation with its own random valid/ready patterns on all four streams. Results are compared
with the golden model outside the simulation, so a mismatch is counted (and the case kept for
replay) instead of stopping the run. Prints progress, the seed, the mismatch count (expected:
0) and the merged functional coverage; exit status 1 when anything mismatched.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from gen.presets import preset
from hw.config import MX_BLOCK, ArrayConfig, ConfigError, Mode

__all__ = ["random_traffic", "plan_mode", "run_mode", "main"]

#: Simulations per mode are split into jobs of at most this many MACs (one simulation each).
JOB_MACS = 400_000


def random_traffic(rng: np.random.Generator) -> dict[str, list[int]]:
    """Random valid/ready patterns (cycled by the testbench) for act, wgt, prm and res."""
    def pattern(p_one: float) -> list[int]:
        bits = (rng.random(int(rng.integers(1, 9))) < p_one).astype(int).tolist()
        if not any(bits):
            bits[int(rng.integers(0, len(bits)))] = 1
        return bits
    full = rng.random() < 0.25  # a quarter of the jobs run at full rate on some streams
    return {"in_pattern": [1] if full else pattern(rng.uniform(0.3, 1.0)),
            "wgt_pattern": pattern(rng.uniform(0.3, 1.0)),
            "prm_pattern": pattern(rng.uniform(0.2, 1.0)),
            "out_pattern": [1] if full else pattern(rng.uniform(0.2, 1.0))}


def _k_choices(cfg: ArrayConfig, mode: Mode, any_k: bool) -> list[int]:
    step = cfg.step_k(mode.fmt, mode.sparsity)
    unit = MX_BLOCK if mode.scale_kind == "pow2" or not any_k else step
    unit = math.lcm(unit, step)
    top = min(cfg.k_max, 512)
    return list(range(unit, top + 1, unit))


def _group(rng, cfg: ArrayConfig, mode: Mode, K: int) -> int | None:
    if mode.scale_kind == "pow2":
        return MX_BLOCK
    step = cfg.step_k(mode.fmt, mode.sparsity)
    options = [g for g in range(step, K, step) if K % g == 0 and g % step == 0]
    if options and rng.random() < 0.6:
        return int(rng.choice(options))
    return None  # per channel


def plan_mode(cfg: ArrayConfig, mode: Mode, macs: int, rng: np.random.Generator, *,
              any_k: bool = False) -> list[dict]:
    """Random GEMM specifications of one mode adding up to at least ``macs`` MACs.

    K is a multiple of 32 (whole MX blocks, the same K set for every mode) unless ``any_k``
    (any multiple of the beat; pow2 modes keep whole blocks).
    """
    specs, total = [], 0
    ks = _k_choices(cfg, mode, any_k)
    while total < macs:
        M = int(rng.integers(1, 3 * cfg.rows + 2))
        N = int(rng.integers(1, 3 * cfg.cols + 2))
        K = int(rng.choice(ks))
        stage = "requant" if cfg.requant and rng.random() < 0.4 else "raw"
        flags = {}
        if rng.random() < 0.08:
            if mode.fmt == "ternary":
                flags["invalid_ternary"] = True
            elif mode.scale_kind == "pow2":
                key = str(rng.choice(["nan_scale", "window_overflow"]
                                     + (["nan_exp"] if mode.mx_act else [])))
                flags[key] = True
        specs.append({"M": M, "K": K, "N": N, "group": _group(rng, cfg, mode, K),
                      "out_stage": stage, "flags": flags, "seed": int(rng.integers(1 << 62))})
        total += M * N * K
    return specs


def _materialize(cfg: ArrayConfig, mode: Mode, spec: dict, name: str) -> dict:
    from golden.gemm import gemm
    from verif.cases import random_case

    m = Mode(mode.fmt, mode.sparsity, mode.scale_kind, mode.mx_act, spec["out_stage"])
    layer, x, x_exp = random_case(spec["seed"], cfg, m, spec["M"], spec["K"], spec["N"],
                                  group=spec["group"], **spec["flags"])
    y, err = gemm(x, layer, x_exp=x_exp, frac_bits=cfg.frac_bits, t_min=cfg.t_min,
                  t_max=cfg.t_max, out_stage=m.out_stage)
    return {"name": name, "layer": layer, "x": x, "x_exp": x_exp, "out_stage": m.out_stage,
            "golden": (y, np.asarray(err, bool))}


def run_mode(cfg_dict: dict, mode_dict: dict, specs: list[dict], traffic: dict, workdir: str,
             sim: str, seed: int) -> dict:
    """One simulation: stream ``specs`` in one mode, compare every result with golden."""
    from verif.launch import run_cases
    from verif.scoreboard import count_mismatches
    from verif.toolchain import build_model

    cfg = ArrayConfig.from_dict(cfg_dict)
    mode = Mode(**mode_dict)
    cases = []
    for i, spec in enumerate(specs):
        case = _materialize(cfg, mode, spec, f"{i:04d}")
        case.update(traffic)
        cases.append(case)
    golden = {c["name"]: c.pop("golden") for c in cases}
    model = build_model(cfg, sim=sim, quiet=True)
    t0 = time.monotonic()
    out = {"mode": mode.name, "gemms": len(cases), "macs": sum(s["M"] * s["N"] * s["K"]
                                                             for s in specs),
           "mismatches": 0, "bad_cases": [], "cycles": 0, "error": None, "workdir": workdir}
    try:
        report = run_cases(model, cases, workdir=workdir, seed=seed)
    except Exception as exc:  # a crashed simulation counts as a mismatch of the whole job
        out["error"] = f"{type(exc).__name__}: {str(exc)[-1500:]}"
        out["mismatches"] = out["gemms"]
        return out
    for entry in report["cases"]:
        out["cycles"] += entry["cycles"]
    for name, (y, err) in report["results"].items():
        gy, gerr = golden[name]
        bad = count_mismatches(y, err, gy, gerr)
        if bad:
            out["mismatches"] += bad
            out["bad_cases"].append({"case": name, "spec": specs[int(name)], "outputs": bad})
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verif.soak", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--preset", default="tiny", help="configuration (default tiny)")
    parser.add_argument("--macs", type=float, default=1e6,
                        help="dense-equivalent MACs per mode (default 1e6)")
    parser.add_argument("--seed", type=int, help="base seed (default: UPE_SEED or the clock)")
    parser.add_argument("--jobs", type=int, default=max(os.cpu_count() or 1, 1),
                        help="simulations in parallel (default: CPU count)")
    parser.add_argument("--modes", default="*", help="only modes matching this glob, e.g. "
                                                     "'int4-2:4-*'")
    parser.add_argument("--any-k", action="store_true",
                        help="K any multiple of the beat, not only of 32")
    parser.add_argument("--sim", default=os.environ.get("SIM") or "verilator",
                        choices=("verilator", "icarus"))
    parser.add_argument("-o", "--out", default="build/soak", help="work directory")
    args = parser.parse_args(argv)
    try:
        cfg = preset(args.preset)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.macs <= 0 or args.jobs < 1:
        parser.error("--macs and --jobs must be positive")
    seed = args.seed if args.seed is not None else int(
        os.environ.get("UPE_SEED") or time.time_ns() % (1 << 31))
    modes = [m for m in cfg.modes if fnmatch.fnmatch(m.name, args.modes)]
    if not modes:
        parser.error(f"no mode of {cfg.name} matches {args.modes!r}")
    from verif.toolchain import build_model, simulator_missing
    why = simulator_missing(args.sim)
    if why:
        print(f"python -m verif.soak: error: {args.sim}: {why}", file=sys.stderr)
        return 2
    out_dir = Path(args.out).resolve()  # the simulator runs in its own working directory
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"[soak] {cfg.name} on {args.sim}: {len(modes)} modes x >= {args.macs:.0f} MACs, "
          f"seed {seed} (replay: python -m verif.soak --preset {args.preset} --seed {seed} "
          f"--macs {args.macs:g})", flush=True)
    build_model(cfg, sim=args.sim)  # once, before the workers share it
    jobs = []
    for i, mode in enumerate(modes):
        rng = np.random.default_rng([seed, i])
        specs = plan_mode(cfg, mode, int(args.macs), rng, any_k=args.any_k)
        chunk, macs = [], 0
        for spec in specs:
            chunk.append(spec)
            macs += spec["M"] * spec["N"] * spec["K"]
            if macs >= JOB_MACS or spec is specs[-1]:
                j = len(jobs)
                jobs.append((cfg.to_dict(), {"fmt": mode.fmt, "sparsity": mode.sparsity,
                                             "scale_kind": mode.scale_kind,
                                             "mx_act": mode.mx_act},
                             chunk, random_traffic(rng), str(out_dir / f"job{j:04d}"),
                             args.sim, seed + j))
                chunk, macs = [], 0
    t0 = time.monotonic()
    totals = {"gemms": 0, "macs": 0, "cycles": 0, "mismatches": 0}
    per_mode: dict[str, dict] = {}
    failures = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_mode, *job) for job in jobs]
        for done, fut in enumerate(as_completed(futures), 1):
            res = fut.result()
            for key in totals:
                totals[key] += res[key]
            pm = per_mode.setdefault(res["mode"], {"gemms": 0, "macs": 0, "mismatches": 0})
            for key in pm:
                pm[key] += res[key]
            if res["mismatches"] or res["error"]:
                failures.append(res)
            elapsed = time.monotonic() - t0
            eta = elapsed / done * (len(jobs) - done)
            print(f"[soak] {done}/{len(jobs)} jobs ({res['mode']}: {res['gemms']} GEMMs, "
                  f"{res['macs']} MACs): {totals['gemms']} GEMMs, {totals['macs']:.3g} MACs, "
                  f"{totals['mismatches']} mismatches, {elapsed:.0f} s, ETA {eta:.0f} s",
                  flush=True)
            if res["error"]:
                print(f"[soak]   simulation failed in {res['workdir']}: {res['error'][:300]}",
                      flush=True)
    elapsed = time.monotonic() - t0
    short = [m for m, v in per_mode.items() if v["macs"] < args.macs]
    summary = {"preset": args.preset, "config": cfg.name, "sim": args.sim, "seed": seed,
               "modes": len(per_mode), "macs_per_mode_min": min(v["macs"] for v in
                                                                per_mode.values()),
               **totals, "seconds": round(elapsed, 1), "failures": failures,
               "per_mode": per_mode}
    (out_dir / "soak.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    from verif.coverage import summary_lines, write_report
    cov_files = sorted(str(p) for p in out_dir.glob("job*/coverage.json"))
    if cov_files:
        report = write_report(cov_files, out_dir / "coverage.md")
        print("\n".join(summary_lines(report)[:4]))
    print(f"[soak] done: {len(per_mode)} modes, {totals['gemms']} GEMMs, {totals['macs']:.4g} "
          f"MACs (min per mode {summary['macs_per_mode_min']:.3g}), {totals['cycles']} cycles "
          f"in {elapsed:.0f} s; mismatches: {totals['mismatches']}; seed {seed}", flush=True)
    for res in failures:
        print(f"[soak] MISMATCH in {res['mode']} ({res['workdir']}): "
              f"{json.dumps(res['bad_cases'][:3])} {res['error'] or ''}")
    if short:
        print(f"[soak] error: modes below {args.macs:g} MACs: {', '.join(short)}",
              file=sys.stderr)
    return 1 if (totals["mismatches"] or failures or short) else 0


if __name__ == "__main__":
    sys.exit(main())
