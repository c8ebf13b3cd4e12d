"""docs/TUTORIAL.md: every command of its ``sh`` blocks runs, in order, and succeeds (the
``verif run --check`` steps compare the RTL with the golden model bit for bit).
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "TUTORIAL.md"


def tutorial_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", TUTORIAL.read_text(), re.S)
    return [line for block in blocks for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_tutorial_has_the_whole_path():
    text = " ".join(tutorial_commands())
    for step in ("golden compress", "golden quantize", "verif run", "--check",
                 "golden dequantize", "golden requant-params", "--out-stage requant"):
        assert step in text, step
    assert "--preset tiny" in text


@pytest.mark.sim
def test_tutorial_runs(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    for command in tutorial_commands():
        argv = shlex.split(command)
        if argv[0] == "python":
            argv[0] = sys.executable
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1800)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        if "--check" in argv:
            assert "bit-exact" in proc.stdout, proc.stdout
