"""``python -m gen``: configure the PE array and emit Verilog with its manifest."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gen import __version__
from gen.cli import add_config_args, config_from_args
from gen.presets import PRESETS
from hw.config import ConfigError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gen", description=__doc__)
    parser.add_argument("--version", action="version", version=f"unified-pe {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("verilog", help="emit <module>.v, .json, .vlt and _inst.vh")
    add_config_args(p)
    p.add_argument("-o", "--out", required=True, metavar="DIR")
    p.add_argument("--axi-names", action="store_true",
                   help="also emit <module>_axis.v: the core under AXI4-Stream port names "
                        "(tdata/tvalid/tready/tlast) and its instantiation template")
    p.add_argument("--force", action="store_true",
                   help="overwrite files of a different configuration with the same name")
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
        paths = emit(cfg, out, axi_names=args.axi_names, force=args.force)
        for kind, path in paths.items():
            print(f"[gen] wrote {kind:8s} {path}")
        print(f"[gen] done in {time.monotonic() - t0:.1f} s")
        return 0
    except ConfigError as exc:  # also gen.emit.EmitError
        print(f"python -m gen: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
