"""The import graph runs one way: golden <- hw <- gen <- verif <- flows <- examples.

The contract lives in ``pyproject.toml`` (``[tool.importlinter]``) and is checked with the
``import-linter`` package; a second check refuses private names imported across packages.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("golden", "hw", "gen", "verif", "flows", "examples")


def test_layers_contract_holds():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_no_private_name_crosses_a_package():
    offenders = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
                    continue
                top = node.module.split(".")[0]
                if top not in PACKAGES or top == pkg:
                    continue
                for alias in node.names:
                    if alias.name.startswith("_"):
                        offenders.append(f"{path.relative_to(ROOT)}: {node.module}.{alias.name}")
    assert not offenders, "private names imported across packages:\n" + "\n".join(offenders)
