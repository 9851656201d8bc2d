"""The floors of ARCHITECTURE.md and the rooms of the tree, checked on the source:
- `models` and `remediation` never import `detector`, nor each other;
- no stage of the detector imports what runs, measures or types commands (`runtime`, `cli`,
  `eval`, `bench`) or the simulator;
- test helpers are not in the wheel, and nothing in it imports the tests or pytest;
- `vigil --help` imports no heavy library (numpy, polars, scikit-learn, ...): commands import
  what they need when they run;
- the default pipeline imports neither scikit-learn, river, pandas nor scipy.stats (about
  150 MiB resident that its detectors do not use), and `models` still names the detectors
  built on them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"models": {"detector", "remediation"}, "remediation": {"detector", "models"}}
NOT_STAGES = ("runtime", "cli", "eval", "bench", "simulate")  # detector/<these> run or measure


def imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names), TYPE_CHECKING imports included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_floors_do_not_import_upper_ones(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    for f in files:
        bad = {n.split(".")[0] for n in imports(f)} & FORBIDDEN[package]
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_no_stage_imports_runtime_cli_eval_bench_or_the_simulator() -> None:
    stages = [f for f in sorted((ROOT / "detector").rglob("*.py"))
              if f.relative_to(ROOT / "detector").parts[0] not in NOT_STAGES
              and f.name != "__main__.py"]
    assert len(stages) > 30
    for f in stages:
        bad = {n for n in imports(f) if any(n == f"detector.{r}" or n.startswith(f"detector.{r}.")
                                            for r in NOT_STAGES)}
        assert not bad, f"{f.relative_to(ROOT)} (a stage) imports {sorted(bad)}"


def test_the_wheel_holds_the_three_packages_and_no_test_helper() -> None:
    """What setuptools packs, by the pyproject's own find rule (offline: no build)."""
    import tomllib

    from setuptools import find_packages

    rule = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packed = find_packages(str(ROOT), include=rule["packages"]["find"]["include"])
    assert {p.split(".")[0] for p in packed} == {"detector", "models", "remediation"}, packed
    for pkg in packed:
        for f in (ROOT / Path(*pkg.split("."))).glob("*.py"):
            src = f.read_text(encoding="utf-8")
            assert "import pytest" not in src and "from tests" not in src, f


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys, detector.cli; heavy = ('numpy', 'polars', 'scipy', 'sklearn', 'river', "
            "'pydantic', 'kafka', 'fastapi', 'httpx', 'prometheus_client', 'msgspec'); "
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "", f"`vigil --help` imports {out.stdout.strip()}"


def test_the_default_pipeline_imports_no_unused_heavy_library() -> None:
    # a batch in and the run finished, so its windows are closed and scored
    code = ("import sys; from detector.config import VigilConfig; from detector.pipeline import "
            "Pipeline; p = Pipeline(VigilConfig()); p.process([b'{\"ts\": 1, \"service\": "
            "\"a\", \"msg\": \"x\"}']); p.finish(); "
            "heavy = ('sklearn', 'river', 'pandas', 'scipy.stats'); "
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "", f"the default pipeline imports {out.stdout.strip()}"
    code = ("import sys, models; assert 'sklearn' not in sys.modules; "
            "from models import HalfSpaceTreesDetector, IsolationForestDetector; "
            "print(IsolationForestDetector.__module__, HalfSpaceTreesDetector.__module__)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["models.iforest", "models.hstrees"]
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        import models
        models.Nope  # noqa: B018
