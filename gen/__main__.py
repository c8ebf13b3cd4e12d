"""``python -m gen``: configure the PE array, emit Verilog and its manifest, pack beats."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gen import __version__
from gen.cli import add_config_args, config_from_args
from gen.presets import PRESETS
from hw.config import ConfigError


def _load_array(path: str, what: str):
    import numpy as np
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what} {path!r}: {exc}") from None
    if not isinstance(data, np.ndarray):
        data.close()
        raise ConfigError(f"{what} {path!r} must be a single .npy array, not an .npz archive")
    return data


def cmd_pack(cfg, args) -> int:
    """``python -m gen pack``: the beats of ``x @ layer`` for the stand-alone harness."""
    import numpy as np

    from gen.pack import Packer, PackError  # Amaranth only when packing
    from golden.layer import LayerError, load_layer
    try:
        layer = load_layer(args.layer)
    except LayerError as exc:
        raise ConfigError(f"invalid layer file {args.layer}: {exc}") from None
    x = _load_array(args.x, "activations")
    x_exp = None
    if args.x_exp:
        x_exp = _load_array(args.x_exp, "activation exponents")
        if x_exp.dtype != np.uint8:
            raise ConfigError(f"activation exponents {args.x_exp} must be uint8, not "
                              f"{x_exp.dtype}")
    if x.ndim == 2 and x.shape[0] == 0:
        raise ConfigError(f"activations {args.x} have no rows: nothing to pack")
    t0 = time.monotonic()
    try:
        files = Packer(cfg).write_beat_files(layer, x, args.out, x_exp=x_exp,
                                             out_stage=args.out_stage)
    except PackError as exc:
        raise ConfigError(str(exc)) from None
    print(f"[gen] {cfg.name}: {files.mode.name} M={files.M} N={files.N}, {files.m_tiles}x"
          f"{files.n_tiles} tiles of {files.k_beats} beats ({files.beats} beats, "
          f"{files.result_rows} result rows) -> {Path(args.out) / 'index.json'} "
          f"in {time.monotonic() - t0:.1f} s")
    return 0


def main(argv=None) -> int:
    """Run ``python -m gen``; return the exit status."""
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
    p = sub.add_parser("pack", help="write a GEMM's beats as $readmemh files + index.json "
                                     "(the input of verif/harness/upe_harness.v)")
    add_config_args(p)
    p.add_argument("--layer", required=True, help="compressed layer file (.npz)")
    p.add_argument("--x", required=True, help="int8 activations [M, K] (.npy)")
    p.add_argument("--x-exp", help="uint8 MXINT8 exponents [M, K/32] (.npy)")
    p.add_argument("--out-stage", choices=("raw", "requant"), default="raw")
    p.add_argument("-o", "--out", required=True, metavar="DIR")
    p = sub.add_parser("presets", help="list the named presets")
    p = sub.add_parser("config", help="print the resolved configuration as JSON")
    add_config_args(p)
    args = parser.parse_args(argv)

    try:
        if args.cmd == "presets":
            for name, cfg in PRESETS.items():
                mx = ",".join(("mxint8", *cfg.fp8_activations)) if cfg.mx_activations else "off"
                print(f"{name:16s} {cfg.rows}x{cfg.cols} slots={cfg.slots} window={cfg.window} "
                      f"formats={','.join(cfg.formats)} sparsity={','.join(cfg.sparsity)} "
                      f"scales={','.join(cfg.scale_kinds)} mx_act={mx} acc_bits={cfg.acc_bits}")
            return 0
        cfg = config_from_args(args)
        if args.cmd == "config":
            print(cfg.to_json())
            return 0
        if args.cmd == "pack":
            return cmd_pack(cfg, args)
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
        print(f"python -m gen {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
