"""Command-line options shared by every command that builds a configuration."""

from __future__ import annotations

import argparse
import hashlib
import sys

from gen.presets import PRESETS, preset

__all__ = ["Parser", "add_config_args", "config_from_args"]


class Parser(argparse.ArgumentParser):
    """argparse for the project's commands: a bad argument prints the usage and one error
    line, and exits with status 2 (no traceback)."""

    def error(self, message):
        """Report a bad argument and exit with status 2."""
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


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
    p.add_argument("--fp8-activations", type=_csv, metavar="LIST",
                   help="fp8 formats MX activations may use: fp8_e4m3,fp8_e5m2 or none "
                        "(needs --mx-activations on)")
    p.add_argument("--requant", choices=("on", "off"))
    p.add_argument("--scale-bits", type=int)
    p.add_argument("--k-max", type=int)
    p.add_argument("--frac-bits", type=int)
    p.add_argument("--t-window", type=_window, metavar="LO:HI", help="pow2 exponent window")
    p.add_argument("--acc-bits", type=int, help="default: the derived minimum safe width")
    p.add_argument("--dsp-lanes", type=int, metavar="N",
                   help="multiplier lanes per PE built as DSP products (default: the int8 "
                        "lanes), the rest shift-add products in LUTs")
    p.add_argument("--name", help="top module name")


def config_from_args(args: argparse.Namespace):
    """The configuration named by the preset, file and override options."""
    cfg = preset(args.preset)
    if args.config:
        cfg = cfg.from_file(args.config, base=cfg)
    changes = {}
    for key in ("rows", "cols", "slots", "window", "formats", "sparsity", "scale_kinds",
                "scale_bits", "k_max", "frac_bits", "acc_bits", "dsp_lanes", "name"):
        value = getattr(args, key, None)
        if value is not None:
            changes[key] = value
    for key in ("mx_activations", "requant"):
        value = getattr(args, key, None)
        if value is not None:
            changes[key] = value == "on"
    if getattr(args, "fp8_activations", None) is not None:
        changes["fp8_activations"] = [f for f in args.fp8_activations if f != "none"]
    if args.t_window is not None:
        changes["t_min"], changes["t_max"] = args.t_window
    if changes:
        cfg = cfg.replace(**changes)
    base = preset(args.preset)
    if args.name is None and cfg.name == base.name and cfg != base:  # not renamed by a file
        cfg = cfg.replace(name=override_name(base, cfg))
    return cfg


def override_name(base, cfg) -> str:
    """The module name of a preset changed by options: ``<preset name>_<rows>x<cols>`` when
    only the array size changed, else with a short digest of the configuration too, so that
    no two different arrays share a module (or file) name.
    """
    name = base.name
    if (cfg.rows, cfg.cols) != (base.rows, base.cols):
        name += f"_{cfg.rows}x{cfg.cols}"
    if cfg.replace(rows=base.rows, cols=base.cols, name=base.name) != base:
        name += "_" + hashlib.sha256(cfg.replace(name=base.name).to_json().encode()
                                     ).hexdigest()[:6]
    return name
