"""Independent points of a sweep or a soak on Dask distributed.

A local cluster (one single-threaded worker process per CPU, no dashboard) unless a scheduler
address is given (option or the ``UPE_DASK_SCHEDULER`` environment variable, e.g.
``tcp://head:8786`` of a ``dask scheduler`` with ``dask worker`` processes on other machines,
each with this project importable and its simulators installed). ``serial`` runs the points in
this process, one after the other: the reference the distributed results must equal.

Each point is one call ``fn(*args)``; a point that raises is reported with its error and the
others go on. Results come back in submission order whatever the completion order.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SCHEDULER_ENV", "PointResult", "add_cluster_args", "run_points", "scheduler_from"]

SCHEDULER_ENV = "UPE_DASK_SCHEDULER"
ROOT = Path(__file__).resolve().parent.parent
BAR = 30


@dataclass
class PointResult:
    """The outcome of one point: its value or its error."""

    index: int
    value: object = None
    error: str | None = None
    seconds: float = 0.0


def add_cluster_args(parser, *, what: str, jobs: int, jobs_help: str) -> None:
    """The ``--jobs``, ``--scheduler`` and ``--serial`` options of a command that runs
    ``what`` (its points or jobs) through `run_points`."""
    parser.add_argument("--jobs", type=int, default=jobs, help=jobs_help)
    parser.add_argument("--scheduler", metavar="ADDR",
                        help=f"Dask scheduler to hand the {what} to (default: "
                             f"{SCHEDULER_ENV}, else a local cluster)")
    parser.add_argument("--serial", action="store_true",
                        help=f"no Dask: the {what} one after the other in this process")


def scheduler_from(option: str | None) -> str | None:
    """The scheduler to use: the option, else ``UPE_DASK_SCHEDULER``, else None (local)."""
    return option or os.environ.get(SCHEDULER_ENV) or None


def _timed(fn, args):
    t0 = time.monotonic()
    value = fn(*args)
    return value, time.monotonic() - t0


def _bar(done: int, total: int, failed: int, t0: float, label: str, note: str) -> str:
    filled = BAR * done // max(total, 1)
    elapsed = time.monotonic() - t0
    eta = elapsed / done * (total - done) if done else 0.0
    return (f"[{label}] |{'#' * filled}{'.' * (BAR - filled)}| {done}/{total}, {failed} failed, "
            f"{elapsed:.0f} s, ETA {eta:.0f} s{': ' + note if note else ''}")


def run_points(fn: Callable, points: Sequence[tuple], *, scheduler: str | None = None,
               workers: int | None = None, processes: bool = True, label: str = "points",
               describe: Callable[[PointResult], str] | None = None,
               out=sys.stdout) -> list[PointResult]:
    """Run ``fn(*point)`` for every point; return their `PointResult` in point order.

    ``scheduler``: ``"serial"``, a Dask scheduler address, or None for a local cluster of
    ``workers`` processes (threads with ``processes=False``). A progress bar line is printed
    per finished point, with ``describe(result)`` after it.
    """
    total = len(points)
    results: list[PointResult | None] = [None] * total
    t0 = time.monotonic()
    failed = 0

    def report(res: PointResult) -> None:
        nonlocal failed
        results[res.index] = res
        failed += res.error is not None
        done = sum(r is not None for r in results)
        note = f"point {res.index} FAILED: {res.error.splitlines()[-1][:200]}" if res.error \
            else (describe(res) if describe else "")
        print(_bar(done, total, failed, t0, label, note), file=out, flush=True)

    if scheduler == "serial":
        for i, point in enumerate(points):
            try:
                value, seconds = _timed(fn, point)
                report(PointResult(i, value, None, seconds))
            except Exception as exc:  # reported per point, the others go on
                report(PointResult(i, None, f"{type(exc).__name__}: {exc}"))
        return results  # type: ignore[return-value]

    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        print(f"[{label}] {total} points on the Dask scheduler {scheduler}", file=out,
              flush=True)
        client = Client(scheduler)
    else:
        # Worker processes import this checkout's packages.
        path = os.environ.get("PYTHONPATH", "")
        if str(ROOT) not in path.split(os.pathsep):
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), path) if p)
        n = workers or os.cpu_count() or 1
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
        print(f"[{label}] {total} points on a local Dask cluster of {n} "
              f"{'processes' if processes else 'threads'}", file=out, flush=True)
    try:
        futures = {client.submit(_timed, fn, point, pure=False, key=f"{label}-{i}"): i
                   for i, point in enumerate(points)}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                value, seconds = fut.result()
                report(PointResult(i, value, None, seconds))
            except Exception as exc:  # reported per point, the others go on
                report(PointResult(i, None, f"{type(exc).__name__}: {exc}"))
            fut.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results  # type: ignore[return-value]
