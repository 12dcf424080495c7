"""model/ must run wherever torch runs: no Ray, no MLflow (docs/architecture.md, "Layers")."""
from __future__ import annotations

import re
from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parents[2] / "model"
FORBIDDEN = ("ray", "mlflow")
# `import ray`, `import ray.train as t`, `from mlflow import x`, `import os, ray`, and
# the same inside a function; not `import raylib` or `from model.rays import`.
IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.\s,]+?)(?:\s+as\s+\w+)?\s*$)", re.M)
DYNAMIC = re.compile(r"""(?:__import__|import_module)\(\s*['"]([\w.]+)['"]""")


def imported_modules(source: str) -> set[str]:
    mods = set()
    for from_mod, names in IMPORT.findall(source):
        for name in [from_mod] if from_mod else names.split(","):
            mods.add(name.strip().split(" as ")[0].strip())
    mods.update(DYNAMIC.findall(source))
    return mods


def forbidden_imports(source: str) -> set[str]:
    return {m for m in imported_modules(source) if m.split(".")[0] in FORBIDDEN}


def test_the_checker_catches_forbidden_imports():
    src = "import os\nimport ray\n    from mlflow.tracking import X\nimport os, ray.data as rd\nx = __import__('mlflow')\n"
    assert forbidden_imports(src) == {"ray", "mlflow.tracking", "ray.data", "mlflow"}
    assert forbidden_imports("import raylib\nfrom model.rays import x\n# import ray\n") == set()


def test_model_package_imports_neither_ray_nor_mlflow():
    files = sorted(MODEL_DIR.glob("*.py"))
    assert files, f"no python files under {MODEL_DIR}"
    offenders = {f.name: sorted(forbidden_imports(f.read_text())) for f in files}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"model/ must not import ray or mlflow: {offenders}"
