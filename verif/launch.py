"""Run cocotb jobs on a built model: used by the pytest regressions and the RTL runner."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from golden.layer import Layer, save_layer
from verif.toolchain import SimModel, verilator_env

__all__ = ["Case", "run_cases"]


class Case(dict):
    """One GEMM of a job: ``name``, ``layer`` (Layer), ``x``, ``x_exp``, expected ``y``/``err``,
    ``out_stage`` and the traffic patterns (``in_pattern``, ``wgt_pattern``, ``prm_pattern``,
    ``out_pattern``), ``reset_mid``."""


def run_cases(model: SimModel, cases: list[dict], *, workdir: str | Path | None = None,
              seed: int | None = None, waves: bool = False) -> dict:
    """Run ``cases`` in one simulation of ``model``; return the report (cycles per case).

    Results of each case are returned under ``results[name] = (y, err)``. A mismatch against
    the expected values given in a case fails the cocotb test, which raises here.
    """
    from cocotb_tools.runner import get_runner

    verilator_env()
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="upe-job-")
        workdir = tmp.name
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    job = {"manifest": str(model.manifest), "cases": [], "report": str(workdir / "report.json")}
    for i, case in enumerate(cases):
        name = case.get("name", f"case{i}")
        layer: Layer = case["layer"]
        layer_path = workdir / f"{i:03d}_layer.npz"
        save_layer(layer_path, layer)
        arrays = {"x": case["x"]}
        if case.get("x_exp") is not None:
            arrays["x_exp"] = case["x_exp"]
        if case.get("y") is not None:
            arrays["y"], arrays["err"] = case["y"], case["err"]
        data_path = workdir / f"{i:03d}_data.npz"
        np.savez(data_path, **arrays)
        entry = {"name": name, "layer": str(layer_path), "data": str(data_path),
                 "out": str(workdir / f"{i:03d}_out.npz"),
                 "out_stage": case.get("out_stage", "raw")}
        for key in ("in_pattern", "wgt_pattern", "prm_pattern", "out_pattern", "reset_mid"):
            if key in case:
                entry[key] = case[key]
        job["cases"].append(entry)
    job_path = workdir / "job.json"
    job_path.write_text(json.dumps(job, indent=2))

    runner = get_runner(model.sim)
    env = {"UPE_JOB": str(job_path), "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
    runner.test(
        test_module="verif.tb_core", hdl_toplevel=model.toplevel, hdl_toplevel_lang="verilog",
        build_dir=model.build_dir,
        test_dir=workdir, extra_env=env, seed=seed, waves=waves,
        log_file=workdir / "sim.log", results_xml=str(workdir / "results.xml"))
    report_path = workdir / "report.json"
    if not report_path.exists():
        log = (workdir / "sim.log").read_text()[-3000:] if (workdir / "sim.log").exists() else ""
        raise RuntimeError(f"simulation wrote no report; end of the log:\n{log}")
    report = json.loads(report_path.read_text())
    results = {}
    for entry in job["cases"]:
        with np.load(entry["out"]) as out:
            results[entry["name"]] = (out["y"], out["err"])
    report["results"] = results
    if tmp is not None:
        tmp.cleanup()
    return report
