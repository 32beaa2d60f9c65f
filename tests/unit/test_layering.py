"""The domain package never imports Prefect: statically, and at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "loopline"


def test_no_module_in_loopline_imports_prefect() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(SRC)}: {n}"
                for n in names
                if n.split(".")[0] in {"prefect", "flows", "tasks"}
            ]
    assert offenders == []


def test_importing_the_domain_does_not_load_prefect() -> None:
    code = (
        "import sys, loopline.workflow, loopline.cli, loopline.config, loopline.stages;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
