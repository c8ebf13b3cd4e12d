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
#: Tests skipped because a simulator is missing (reason starts with the simulator's name).
_MISSING_SIM_SKIPS: list[tuple[str, str]] = []
_SIM_PREFIXES = ("icarus:", "verilator:")


def pytest_runtest_logreport(report):
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if reason.startswith(_SIM_PREFIXES):
            _MISSING_SIM_SKIPS.append((report.nodeid, reason))
    if report.when != "call":
        return
    for key, value in getattr(report, "user_properties", ()):
        if key == "coverage_json":
            _COVERAGE_FILES.append(value)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if hasattr(config, "workerinput"):
        return
    if _MISSING_SIM_SKIPS:
        terminalreporter.section("SIMULATOR MISSING: tests NOT run", red=True, bold=True)
        for nodeid, reason in _MISSING_SIM_SKIPS:
            terminalreporter.write_line(f"SKIPPED {nodeid}: {reason}", red=True)
        terminalreporter.write_line(
            f"{len(_MISSING_SIM_SKIPS)} simulation tests did not run. Icarus Verilog comes from "
            "Debian/Ubuntu: `sudo apt-get install iverilog` (macOS: `brew install icarus-verilog`"
            "), then run `make test` again (see README, Quick start).", yellow=True, bold=True)
    if not _COVERAGE_FILES:
        return
    from verif.coverage import summary_lines, write_report
    from verif.toolchain import BUILD

    out = BUILD / "sim" / "coverage.md"
    report = write_report(sorted(set(_COVERAGE_FILES)), out)
    terminalreporter.section("functional coverage of the cocotb regressions")
    for line in summary_lines(report):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"report: {out}")
