"""The scoreboard: golden results against what the core produced, shared by every testbench.

The cocotb regressions check each result row in order as it leaves the core
(`Scoreboard.check_row`, the first mismatch fails the test with its tile, row and mode) and
the whole GEMM at the end (`Scoreboard.check_result`); the soak counts mismatching outputs
instead of stopping (`count_mismatches`), so a long run reports every bad case. No simulator
is imported here: the soak uses it outside the simulation.
"""

from __future__ import annotations

import numpy as np

from gen.pack import GemmProgram, Packer
from hw.config import ArrayConfig

__all__ = ["Scoreboard", "count_mismatches", "expected_rows"]


def expected_rows(cfg: ArrayConfig, prog: GemmProgram, y: np.ndarray, err: np.ndarray):
    """Golden results → per result beat ``(values, errs)``; padded positions are None.

    Parameters
    ----------
    cfg : ArrayConfig
        The configuration the program was packed for.
    prog : GemmProgram
        The packed GEMM (its tiles give the stream order of the result rows).
    y, err : ndarray, shape (M, N)
        Golden result and error flags.

    Returns
    -------
    list of tuple
        One ``(values, errs)`` per result beat, each a list of ``cols`` ints or None.
    """
    rows, cols = cfg.rows, cfg.cols
    out = []
    for m0, n0 in prog.tiles:
        for r in range(rows):
            values, errs = [], []
            for c in range(cols):
                m, n = m0 + r, n0 + c
                inside = m < y.shape[0] and n < y.shape[1]
                values.append(int(y[m, n]) if inside else None)
                errs.append(int(err[m, n]) if inside else None)
            out.append((values, errs))
    return out


def count_mismatches(y, err, golden_y, golden_err) -> int:
    """Number of outputs whose value or error flag differs from golden (each counts once per kind).

    Parameters
    ----------
    y, err : ndarray, shape (M, N)
        Result and error flags read back from the core.
    golden_y, golden_err : ndarray, shape (M, N)
        The golden model's.

    Returns
    -------
    int
    """
    y = np.asarray(y)
    return int((y != np.asarray(golden_y).astype(y.dtype)).sum()
               + (np.asarray(err) != np.asarray(golden_err)).sum())


def _matches(expected, got) -> bool:
    """Compare one row; ``None`` (a padded position) matches anything."""
    return all(e is None or e == g for e, g in zip(expected, got, strict=True))


class Scoreboard:
    """In-order checker of one GEMM's result rows against golden.

    Parameters
    ----------
    packer : Packer
        Decodes result words (through the hardware's result layout).
    prog : GemmProgram
        The GEMM being streamed.
    y, err : ndarray, shape (M, N), optional
        Golden result and error flags; without them the scoreboard only checks the ``last``
        flags (a run whose result is read back, not checked).
    """

    def __init__(self, packer: Packer, prog: GemmProgram, y=None, err=None):
        self.packer = packer
        self.prog = prog
        self.golden = None if y is None else (np.asarray(y), np.asarray(err, bool))
        self.expected = (None if y is None else
                         expected_rows(packer.cfg, prog, self.golden[0], self.golden[1]))
        self.rows_checked = 0

    @property
    def checking(self) -> bool:
        """Whether golden results were given."""
        return self.expected is not None

    def check_row(self, i: int, word: int) -> None:
        """Check result beat ``i`` (stream order); raise AssertionError on a mismatch."""
        if self.expected is None:
            return
        rows = self.packer.cfg.rows
        tile, row = divmod(i, rows)
        values, errs, last = self.packer.unpack_result(word)
        exp_values, exp_errs = self.expected[i]
        m0, n0 = self.prog.tiles[tile]
        where = f"tile {tile} (m0={m0}, n0={n0}) row {row} [{self.prog.mode.name}]"
        assert last == int(row == rows - 1), f"{where}: last={last}"
        assert _matches(exp_values, values), f"{where}: value {values} != golden {exp_values}"
        assert _matches(exp_errs, errs), f"{where}: err {errs} != golden {exp_errs}"
        self.rows_checked += 1

    def check_result(self, name: str, y, err) -> None:
        """Check the assembled GEMM result; raise AssertionError naming the case on a mismatch."""
        if self.golden is None:
            return
        gy, gerr = self.golden
        assert np.array_equal(y, gy.astype(np.asarray(y).dtype)), f"{name}: mismatch"
        assert np.array_equal(err, gerr), f"{name}: error flags differ"

    def mismatches(self, y, err) -> int:
        """Number of outputs of the assembled result that differ from golden."""
        if self.golden is None:
            return 0
        return count_mismatches(y, err, *self.golden)
