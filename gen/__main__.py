"""``python -m gen``: configure the PE array and emit Verilog with its manifest."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gen.config import PRESETS, ConfigError, preset


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _window(text: str) -> tuple[int, int]:
    try:
        lo, hi = text.split(":")
        return int(lo), int(hi)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI, not {text!r}") from None


def add_config_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that builds a configuration."""
    p.add_argument("--preset", default="default", help=f"one of {', '.join(PRESETS)}")
    p.add_argument("--config", metavar="FILE", help=".json or .toml overriding the preset")
    p.add_argument("--rows", type=int)
    p.add_argument("--cols", type=int)
    p.add_argument("--slots", type=int, help="8-bit weight slots per PE per cycle")
    p.add_argument("--window", type=int, help="activation window (int8 per PE per cycle)")
    p.add_argument("--formats", type=_csv, help="comma list, e.g. int8,int4,ternary")
    p.add_argument("--sparsity", type=_csv, help="comma list, e.g. dense,2:4")
    p.add_argument("--scale-kinds", type=_csv, help="comma list of none,int,pow2")
    p.add_argument("--mx-activations", choices=("on", "off"))
    p.add_argument("--requant", choices=("on", "off"))
    p.add_argument("--scale-bits", type=int)
    p.add_argument("--k-max", type=int)
    p.add_argument("--frac-bits", type=int)
    p.add_argument("--t-window", type=_window, metavar="LO:HI", help="pow2 exponent window")
    p.add_argument("--acc-bits", type=int, help="default: the derived minimum safe width")
    p.add_argument("--name", help="top module name")


def config_from_args(args: argparse.Namespace):
    cfg = preset(args.preset)
    if args.config:
        cfg = cfg.from_file(args.config, base=cfg)
    changes = {}
    for key in ("rows", "cols", "slots", "window", "formats", "sparsity", "scale_kinds",
                "scale_bits", "k_max", "frac_bits", "acc_bits", "name"):
        value = getattr(args, key, None)
        if value is not None:
            changes[key] = value
    for key in ("mx_activations", "requant"):
        value = getattr(args, key, None)
        if value is not None:
            changes[key] = value == "on"
    if args.t_window is not None:
        changes["t_min"], changes["t_max"] = args.t_window
    if changes:
        cfg = cfg.replace(**changes)
    return cfg


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("verilog", help="emit <module>.v, <module>.json and <module>.vlt")
    add_config_args(p)
    p.add_argument("-o", "--out", required=True, metavar="DIR")
    p = sub.add_parser("presets", help="list the named presets")
    p = sub.add_parser("config", help="print the resolved configuration as JSON")
    add_config_args(p)
    args = parser.parse_args(argv)

    try:
        if args.cmd == "presets":
            for name, cfg in PRESETS.items():
                print(f"{name:16s} {cfg.rows}x{cfg.cols} slots={cfg.slots} window={cfg.window} "
                      f"formats={','.join(cfg.formats)} sparsity={','.join(cfg.sparsity)} "
                      f"scales={','.join(cfg.scale_kinds)} acc_bits={cfg.acc_bits}")
            return 0
        cfg = config_from_args(args)
        if args.cmd == "config":
            print(cfg.to_json())
            return 0
        from gen.emit import emit  # Amaranth only when emitting
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the output directory {out}: "
                              f"{exc.strerror or exc}") from None
        t0 = time.monotonic()
        print(f"[gen] {cfg.name}: {cfg.rows}x{cfg.cols} PEs, acc_bits={cfg.acc_bits}, "
              f"frac_bits={cfg.frac_bits} ...", flush=True)
        paths = emit(cfg, out)
        for kind, path in paths.items():
            print(f"[gen] wrote {kind:8s} {path}")
        print(f"[gen] done in {time.monotonic() - t0:.1f} s")
        return 0
    except ConfigError as exc:
        print(f"python -m gen: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
