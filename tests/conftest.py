"""pytest hooks: deterministic property tests; the merged coverage of the cocotb shards.

Every regression shard records the path of its ``coverage.json`` as a test property (which
pytest-xdist carries from the workers to the controller); at the end of the session the
controller merges exactly those files, prints the summary table and writes
``build/sim/coverage.md`` (with ``coverage.json`` beside it) listing the holes.
"""

from __future__ import annotations

import os

from hypothesis import settings

# Property tests draw the same examples on every run (a failure replays as it is);
# HYPOTHESIS_PROFILE=explore searches with fresh randomness instead.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

_COVERAGE_FILES: list[str] = []


def pytest_runtest_logreport(report):
    if report.when != "call":
        return
    for key, value in getattr(report, "user_properties", ()):
        if key == "coverage_json":
            _COVERAGE_FILES.append(value)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if hasattr(config, "workerinput") or not _COVERAGE_FILES:
        return
    from verif.coverage import summary_lines, write_report
    from verif.toolchain import BUILD

    out = BUILD / "sim" / "coverage.md"
    report = write_report(sorted(set(_COVERAGE_FILES)), out)
    terminalreporter.section("functional coverage of the cocotb regressions")
    for line in summary_lines(report):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"report: {out}")
