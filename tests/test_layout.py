"""The code's shape, held by tests: short functions, and importing the package configures nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent / "kit"
MAX_FUNCTION_LINES = 60


def test_no_function_in_kit_is_longer_than_60_lines():
    long = []
    for path in sorted(KIT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(KIT.parent)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


def test_importing_the_kit_loads_no_tensorflow_and_leaves_the_environment_alone():
    code = (
        "import os, sys; before = dict(os.environ); "
        "import kit.cli, kit.models.cnn, kit.models.scratch, kit.training, kit.report, kit.ensemble; "
        "print('tensorflow' in sys.modules, dict(os.environ) == before)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
