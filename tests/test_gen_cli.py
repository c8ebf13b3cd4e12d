"""gen.cli and ``python -m gen``: module names carry the overrides, the version, and every
generator option is reachable from make.
"""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gen import __version__
from gen.cli import add_config_args, config_from_args

ROOT = Path(__file__).resolve().parent.parent


def _cfg(*argv):
    import argparse
    p = argparse.ArgumentParser()
    add_config_args(p)
    return config_from_args(p.parse_args(list(argv)))


def test_names_carry_the_overrides():
    assert _cfg("--preset", "tiny").name == "upe_tiny"
    assert _cfg("--preset", "tiny", "--rows", "2").name == "upe_tiny"  # no change
    assert _cfg("--preset", "tiny", "--rows", "3", "--cols", "5").name == "upe_tiny_3x5"
    a = _cfg("--preset", "tiny", "--formats", "int8").name
    b = _cfg("--preset", "tiny", "--formats", "int8,int4").name
    assert a.startswith("upe_tiny_") and b.startswith("upe_tiny_") and a != b
    assert _cfg("--preset", "tiny", "--rows", "3", "--name", "upe_tiny").name == "upe_tiny"


def test_version_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["version"] == __version__
    out = subprocess.run([sys.executable, "-m", "gen", "--version"], capture_output=True,
                         text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == f"unified-pe {__version__}"


@pytest.mark.parametrize("var, option", [
    ("ROWS=3", "--rows 3"), ("FORMATS=int8,int4", "--formats int8,int4"),
    ("SPARSITY=dense,2:4", "--sparsity dense,2:4"), ("SCALE_KINDS=none", "--scale-kinds none"),
    ("NAME=my_core", "--name my_core"), ("K_MAX=512", "--k-max 512"),
    ("T_WINDOW=-40:8", "--t-window=-40:8"), ("REQUANT=off", "--requant off"),
    ("AXI=1", "--axi-names"),
])
def test_make_verilog_passes_every_option(var, option):
    dry = subprocess.run(["make", "-n", "--no-print-directory", "verilog", "PRESET=tiny", var],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    line = " ".join(dry.split())
    assert re.search(re.escape(option) + r"(\s|$)", line), line


def test_make_covers_every_generator_option():
    """Each option of add_config_args has a make variable (NAME= for --name, ...)."""
    import argparse
    p = argparse.ArgumentParser()
    add_config_args(p)
    makefile = (ROOT / "Makefile").read_text()
    for action in p._actions:
        opt = next((o for o in action.option_strings if o.startswith("--")), None)
        if opt in (None, "--help", "--preset"):
            continue
        assert f"{opt}" in makefile, f"{opt} has no make variable"
