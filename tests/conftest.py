"""pytest hooks: merge the functional coverage of the cocotb shards that ran in this pytest run.

Every regression shard records the path of its ``coverage.json`` as a test property (which
pytest-xdist carries from the workers to the controller); at the end of the session the
controller merges exactly those files, prints the summary table and writes
``build/sim/coverage.md`` (with ``coverage.json`` beside it) listing the holes.
"""

from __future__ import annotations

_COVERAGE_FILES: list[str] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "formal: SymbiYosys proofs (shallow ones; make formal "
                                       "runs the full set)")


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
