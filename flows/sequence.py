"""``python -m flows.sequence``: GEMMs alternating modes on the RTL, sequential and in-band.

Eight GEMMs (int8 dense, int4 2:4, ternary, fp4_e2m1 MX, twice) run in one native simulation,
once each GEMM after the previous one's results and once with the modes as in-band
descriptors, at full rate and under random valid/ready traffic; every result is checked
against golden. Prints the total cycles against the sum of the ideal cycles.
"""

from __future__ import annotations

import argparse

import numpy as np

from gen.presets import preset
from golden.gemm import gemm
from hw.config import Mode
from verif.cases import random_case
from verif.native import Traffic, run_gemms_native
from verif.runner import ideal_cycles

MODES = (Mode("int8", "dense", "none"), Mode("int4", "2:4", "int"), Mode("ternary", "dense", "int"),
         Mode("fp4_e2m1", "dense", "pow2"))


def main(argv=None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m flows.sequence", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("-M", type=int, default=4)
    p.add_argument("-K", type=int, default=1024)
    p.add_argument("-N", type=int, default=4)
    args = p.parse_args(argv)
    cfg = preset(args.preset)
    M, K, N = args.M, args.K, args.N
    gemms = []
    for i in range(8):
        mode = MODES[i % 4]
        layer, x, x_exp = random_case(300 + i, cfg, mode, M, K, N,
                                      group=64 if mode.scale_kind == "int" else None)
        gemms.append({"layer": layer, "x": x, "x_exp": x_exp, "out_stage": "raw", "mode": mode})
    ideal = sum(ideal_cycles(cfg, g["mode"], M, N, K) for g in gemms)
    for name, traffic in (("full", Traffic.full()),
                          ("random", Traffic.random(np.random.default_rng(3)))):
        for inband in (False, True):
            out = run_gemms_native(cfg, gemms, traffic=traffic, inband=inband, quiet=False)
            for g, (y, err) in zip(gemms, out["results"], strict=True):
                want, want_err = gemm(g["x"], g["layer"], x_exp=g["x_exp"],
                                      frac_bits=cfg.frac_bits, t_min=cfg.t_min, t_max=cfg.t_max)
                if not (np.array_equal(y, want) and np.array_equal(err, want_err)):
                    raise SystemExit(f"mismatch against golden ({name}, inband={inband})")
            print(f"{name:6s} {'in-band' if inband else 'sequential':10s} total "
                  f"{out['total_cycles']} ideal {ideal:.0f} over {out['total_cycles'] - ideal:.0f}"
                  f" per GEMM {out['cycles']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
