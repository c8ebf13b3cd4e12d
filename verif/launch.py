"""Run cocotb jobs on a built model: used by the pytest regressions and the RTL runner."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from golden.layer import Layer, save_layer
from verif.toolchain import SimModel, verilator_env

__all__ = ["Case", "SimulationError", "run_cases"]


class SimulationError(AssertionError):
    """The simulation ran but its cocotb test failed (mismatch, timeout, crash)."""


class Case(dict):
    """One GEMM of a job.

    Keys: ``name``, ``layer`` (Layer), ``x``, ``x_exp``, ``x_format`` (optional: the MX
    activation format), expected ``y``/``err``, ``out_stage``
    and the traffic patterns (``in_pattern``, ``wgt_pattern``, ``prm_pattern``,
    ``out_pattern``), ``reset_mid``.
    """


def _watch(path: Path, progress, stop: threading.Event) -> None:
    """Report the testbench's progress file while the simulation runs."""
    last = None
    while not stop.wait(2.0):
        try:
            text = path.read_text()
        except OSError:
            continue
        if text and text != last:
            last = text
            taken, beats, rows, n_rows = (int(v) for v in text.split())
            progress(f"{100 * taken // max(beats, 1):3d}% of beats ({taken}/{beats}), "
                     f"{rows}/{n_rows} result rows")


def run_cases(  # noqa: C901 - job file, launch, progress and result collection in one place
    model: SimModel, cases: list[dict], *, workdir: str | Path | None = None,
    seed: int | None = None, waves: bool = False, progress=None,
    waves_to: str | Path | None = None,
) -> dict:
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
        for key in ("in_pattern", "wgt_pattern", "prm_pattern", "out_pattern", "reset_mid",
                    "x_format"):
            if key in case:
                entry[key] = case[key]
        job["cases"].append(entry)
    job_path = workdir / "job.json"
    job_path.write_text(json.dumps(job, indent=2))

    runner = get_runner(model.sim)
    progress_file = workdir / "progress.txt"
    env = {"UPE_JOB": str(job_path), "UPE_PROGRESS": str(progress_file),
           "PYTHONPATH": os.pathsep.join(
               [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
    stop = threading.Event()
    watcher = None
    if progress is not None:
        watcher = threading.Thread(target=_watch, args=(progress_file, progress, stop),
                                   daemon=True)
        watcher.start()
    try:
        runner.test(
            test_module="verif.tb_core", hdl_toplevel=model.toplevel,
            hdl_toplevel_lang="verilog", build_dir=model.build_dir, test_dir=workdir,
            extra_env=env, seed=seed, waves=waves, log_file=workdir / "sim.log",
            results_xml=str(workdir / "results.xml"))
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
    # Outside pytest the cocotb runner does not raise on a failed test: check here.
    from cocotb_tools.check_results import get_results
    results_xml = workdir / "results.xml"
    failed = True
    if results_xml.exists():
        n_tests, n_failed = get_results(results_xml)
        failed = n_failed > 0 or n_tests == 0
    if failed:
        log_path = workdir / "sim.log"
        log = log_path.read_text()[-4000:] if log_path.exists() else "(no log)"
        raise SimulationError(f"the cocotb test failed; end of {log_path}:\n{log}")
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
    dump = workdir / "dump.fst"
    if waves and dump.exists():
        if waves_to is not None:
            shutil.copyfile(dump, waves_to)
            dump = Path(waves_to)
        report["waves"] = str(dump)
    if tmp is not None:
        tmp.cleanup()
    return report
