"""Soak test: many random GEMMs with random stream traffic on the simulated core.

``python -m verif.soak [--preset tiny] [--macs 1e6] [--seed S] [--jobs N] [--modes GLOB]
[--scheduler ADDR | --serial] [--engine native|cocotb]`` (``make soak``). For every runtime
mode of the configuration (format × sparsity × scale kind × MXINT8 activations) it streams
random GEMMs — random shapes that tile and do not, random group sizes, raw or requantized
output, edge values (`verif.cases`), now and then an error scenario — until at least
``--macs`` dense-equivalent MACs (``M·N·K``) of that mode have run. The GEMMs of a mode are
split into jobs, each one simulation on the native harness (`verif.native`; ``--engine
cocotb`` for the testbench, with functional coverage) under its own seeded LFSR traffic on all
four streams. The jobs are points on Dask (`verif.cluster`: a local cluster of ``--jobs``
workers, or ``--scheduler``/``UPE_DASK_SCHEDULER`` to spread them over machines). Results are
compared with the golden model outside the simulation, so a mismatch is counted (and the case
kept for replay) instead of stopping the run. Prints progress, the seeds, the mismatch count
(expected: 0); exit status 1 when anything mismatched or failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from gen.presets import preset
from golden.formats import FORMATS
from hw.config import MX_BLOCK, ArrayConfig, ConfigError, Mode
from verif.cluster import add_cluster_args

__all__ = ["ENGINES", "random_traffic", "plan_mode", "plan_jobs", "run_job", "summarize",
           "main"]

ENGINES = ("native", "cocotb")
#: Simulations per mode are split into jobs of at least this many MACs (one simulation each).
JOB_MACS = {"native": 2_500_000, "cocotb": 400_000}


def random_traffic(rng: np.random.Generator) -> dict:
    """Random LFSR seeds and duties of act, wgt, prm and res (`verif.native.Traffic`)."""
    from verif.native import Traffic
    return Traffic.random(rng).to_dict()


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
            if FORMATS[mode.fmt].invalid_codes and (mode.scale_kind != "pow2" or rng.random() < .5):
                flags["invalid_codes"] = True  # ternary 0b10, fp8 NaN / Inf
            elif mode.scale_kind == "pow2":
                key = str(rng.choice(["nan_scale", "window_overflow"]
                                     + (["nan_exp"] if mode.mx_act else [])
                                     + (["invalid_x"] if mode.x_format else [])))
                flags[key] = True
        specs.append({"M": M, "K": K, "N": N, "group": _group(rng, cfg, mode, K),
                      "out_stage": stage, "flags": flags, "seed": int(rng.integers(1 << 62))})
        total += M * N * K
    return specs


def _materialize(cfg: ArrayConfig, mode: Mode, spec: dict, name: str) -> dict:
    from golden.gemm import gemm
    from verif.cases import random_case

    m = dataclasses.replace(mode, out_stage=spec["out_stage"])
    layer, x, x_exp = random_case(spec["seed"], cfg, m, spec["M"], spec["K"], spec["N"],
                                  group=spec["group"], **spec["flags"])
    y, err = gemm(x, layer, x_exp=x_exp, x_format=m.activation_format, frac_bits=cfg.frac_bits,
                  t_min=cfg.t_min, t_max=cfg.t_max, out_stage=m.out_stage)
    return {"name": name, "layer": layer, "x": x, "x_exp": x_exp, "out_stage": m.out_stage,
            "x_format": m.activation_format, "golden": (y, np.asarray(err, bool))}


def run_job(cfg_dict: dict, mode_dict: dict, specs: list[dict], traffic: dict, workdir: str,
            sim: str, engine: str, seed: int) -> dict:
    """One simulation: stream ``specs`` in one mode, compare every result with golden."""
    from verif.native import Traffic
    from verif.scoreboard import count_mismatches

    cfg = ArrayConfig.from_dict(cfg_dict)
    mode = Mode(**mode_dict)
    cases = [_materialize(cfg, mode, spec, f"{i:04d}") for i, spec in enumerate(specs)]
    golden = {c["name"]: c.pop("golden") for c in cases}
    traffic_obj = Traffic(**traffic)
    t0 = time.monotonic()
    out = {"mode": mode.name, "gemms": len(cases), "macs": sum(s["M"] * s["N"] * s["K"]
                                                             for s in specs),
           "mismatches": 0, "bad_cases": [], "cycles": 0, "error": None, "workdir": workdir,
           "traffic": traffic, "seed": seed}
    try:
        if engine == "native":
            from verif.native import run_gemms_native
            res = run_gemms_native(cfg, cases, traffic=traffic_obj, sim=sim, workdir=workdir)
            results = {c["name"]: r for c, r in zip(cases, res["results"], strict=True)}
            cycles = res["cycles"]
        else:
            from verif.launch import run_cases
            from verif.toolchain import build_model
            for c in cases:
                c.update(traffic_obj.patterns())
            report = run_cases(build_model(cfg, sim=sim, quiet=True), cases, workdir=workdir,
                               seed=seed)
            results = report["results"]
            cycles = [e["cycles"] for e in report["cases"]]
    except Exception as exc:  # a crashed simulation counts as a mismatch of the whole job
        out["error"] = f"{type(exc).__name__}: {str(exc)[-1500:]}"
        out["mismatches"] = out["gemms"]
        return out
    out["cycles"] = int(sum(cycles))
    for name, (y, err) in results.items():
        gy, gerr = golden[name]
        bad = count_mismatches(y, err, gy, gerr)
        if bad:
            out["mismatches"] += bad
            out["bad_cases"].append({"case": name, "spec": specs[int(name)], "outputs": bad})
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def plan_jobs(cfg: ArrayConfig, modes: list[Mode], macs: float, seed: int, out_dir: Path,
              sim: str, engine: str, any_k: bool = False) -> list[tuple]:
    """The soak's jobs (arguments of `run_job`), reproducible from ``seed``."""
    jobs = []
    for i, mode in enumerate(modes):
        rng = np.random.default_rng([seed, i])
        specs = plan_mode(cfg, mode, int(macs), rng, any_k=any_k)
        chunk, chunk_macs = [], 0
        for spec in specs:
            chunk.append(spec)
            chunk_macs += spec["M"] * spec["N"] * spec["K"]
            if chunk_macs >= JOB_MACS[engine] or spec is specs[-1]:
                j = len(jobs)
                jobs.append((cfg.to_dict(), {"fmt": mode.fmt, "sparsity": mode.sparsity,
                                             "scale_kind": mode.scale_kind,
                                             "mx_act": mode.mx_act,
                                             "x_format": mode.x_format},
                             chunk, random_traffic(rng), str(out_dir / f"job{j:04d}"),
                             sim, engine, seed + j))
                chunk, chunk_macs = [], 0
    return jobs


def summarize(jobs: list[tuple], results) -> tuple[dict, dict, list]:
    """Totals, per-mode figures and failed jobs from `verif.cluster.PointResult` s."""
    totals = {"gemms": 0, "macs": 0, "cycles": 0, "mismatches": 0}
    per_mode: dict[str, dict] = {}
    failures = []
    for job, res in zip(jobs, results, strict=True):
        if res.error is not None:  # the point itself failed (worker lost, import error, ...)
            value = {"mode": Mode(**job[1]).name, "gemms": len(job[2]), "macs": 0,
                     "cycles": 0, "mismatches": len(job[2]), "error": res.error,
                     "workdir": job[4], "bad_cases": [], "traffic": job[3], "seed": job[7]}
        else:
            value = res.value
        for key in totals:
            totals[key] += value[key]
        pm = per_mode.setdefault(value["mode"], {"gemms": 0, "macs": 0, "cycles": 0,
                                                 "mismatches": 0})
        for key in pm:
            pm[key] += value[key]
        if value["mismatches"] or value["error"]:
            failures.append(value)
    return totals, per_mode, failures


def main(argv=None) -> int:
    """Command-line entry point (``make soak``)."""
    parser = argparse.ArgumentParser(prog="python -m verif.soak", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--preset", default="tiny", help="configuration (default tiny)")
    parser.add_argument("--macs", type=float, default=1e6,
                        help="dense-equivalent MACs per mode (default 1e6)")
    parser.add_argument("--seed", type=int, help="base seed (default: UPE_SEED or the clock)")
    add_cluster_args(parser, what="jobs", jobs=max(os.cpu_count() or 1, 1),
                     jobs_help="workers of the local Dask cluster (default: CPU count)")
    parser.add_argument("--engine", choices=ENGINES, default="native",
                        help="native harness (default) or the cocotb testbench (coverage)")
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
    from verif.cluster import run_points, scheduler_from
    from verif.toolchain import simulator_missing
    why = simulator_missing(args.sim)
    if why:
        print(f"python -m verif.soak: error: {args.sim}: {why}", file=sys.stderr)
        return 2
    out_dir = Path(args.out).resolve()  # the simulator runs in its own working directory
    out_dir.mkdir(parents=True, exist_ok=True)
    scheduler = "serial" if args.serial else scheduler_from(args.scheduler)
    print(f"[soak] {cfg.name} on {args.sim} ({args.engine}): {len(modes)} modes x >= "
          f"{args.macs:.0f} MACs, seed {seed} (replay: python -m verif.soak --preset "
          f"{args.preset} --seed {seed} --macs {args.macs:g}"
          f"{' --modes ' + repr(args.modes) if args.modes != '*' else ''})", flush=True)
    if args.engine == "native":
        from verif.native import build_native
        build_native(cfg, sim=args.sim)  # once, before the workers share it
    else:
        from verif.toolchain import build_model
        build_model(cfg, sim=args.sim)
    jobs = plan_jobs(cfg, modes, args.macs, seed, out_dir, args.sim, args.engine,
                     any_k=args.any_k)
    t0 = time.monotonic()

    def describe(res) -> str:
        v = res.value
        return (f"{v['mode']}: {v['gemms']} GEMMs, {v['macs']} MACs, {v['mismatches']} "
                f"mismatches, traffic seeds {v['traffic']['seeds']}, {res.seconds:.1f} s")

    results = run_points(run_job, jobs, scheduler=scheduler, workers=args.jobs, label="soak",
                         describe=describe)
    elapsed = time.monotonic() - t0
    totals, per_mode, failures = summarize(jobs, results)
    short = [m for m, v in per_mode.items() if v["macs"] < args.macs]
    summary = {"preset": args.preset, "config": cfg.name, "sim": args.sim,
               "engine": args.engine, "seed": seed, "scheduler": scheduler or "local",
               "modes": len(per_mode), "macs_per_mode_min": min(v["macs"] for v in
                                                                per_mode.values()),
               **totals, "seconds": round(elapsed, 1), "failures": failures,
               "per_mode": per_mode}
    (out_dir / "soak.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    if args.engine == "cocotb":
        from verif.coverage import summary_lines, write_report
        cov_files = sorted(str(p) for p in out_dir.glob("job*/coverage.json"))
        if cov_files:
            report = write_report(cov_files, out_dir / "coverage.md")
            print("\n".join(summary_lines(report)[:4]))
    print(f"[soak] done: {len(per_mode)} modes, {totals['gemms']} GEMMs, {totals['macs']:.4g} "
          f"MACs (min per mode {summary['macs_per_mode_min']:.3g}), {totals['cycles']} cycles "
          f"in {elapsed:.0f} s; mismatches: {totals['mismatches']}; seed {seed}; report "
          f"{out_dir / 'soak.json'}", flush=True)
    for res in failures:
        print(f"[soak] MISMATCH in {res['mode']} ({res['workdir']}, traffic "
              f"{res['traffic']}): {json.dumps(res['bad_cases'][:3])} {res['error'] or ''}")
    if short:
        print(f"[soak] error: modes below {args.macs:g} MACs: {', '.join(short)}",
              file=sys.stderr)
    return 1 if (totals["mismatches"] or failures or short) else 0


if __name__ == "__main__":
    sys.exit(main())
