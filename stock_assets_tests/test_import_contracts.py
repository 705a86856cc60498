"""The import contracts (`.importlinter`, run by `make test`) hold, and they bite: a module that
breaks one, directly or through a module it imports, makes `lint-imports` fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / ".importlinter"), "--no-cache"],
        cwd=root, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
    )  # fmt: skip


def copy_of_the_code(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    skip = shutil.ignore_patterns("__pycache__")
    for package in ("stock_assets", "serving", "app"):
        shutil.copytree(REPO / package, root / package, ignore=skip)
    shutil.copy(REPO / ".importlinter", root / ".importlinter")
    return root


def test_the_contracts_hold_on_the_code():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_an_indirect_dagster_import_in_the_api_breaks_a_contract(tmp_path):
    root = copy_of_the_code(tmp_path)
    # serving -> a pure-looking helper -> an asset module (which imports Dagster)
    (root / "stock_assets" / "models" / "shortcut.py").write_text(
        "def weights():\n    from stock_assets.gold.signals import SignalConfig\n\n"
        "    return SignalConfig\n"
    )
    (root / "serving" / "shortcut_user.py").write_text(
        "from stock_assets.models.shortcut import weights\n"
    )
    result = lint_imports(root)
    assert result.returncode != 0
    assert "serving and app never import Dagster BROKEN" in result.stdout
    assert "serving and app never import the asset modules BROKEN" in result.stdout
    assert "serving.shortcut_user -> stock_assets.models.shortcut" in result.stdout


def test_dagster_in_a_pure_core_breaks_its_contract(tmp_path):
    root = copy_of_the_code(tmp_path)
    ranking = root / "stock_assets" / "models" / "ranking.py"
    ranking.write_text(ranking.read_text() + "\nimport dagster  # noqa: E402,F401\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "the pure cores never import Dagster BROKEN" in result.stdout
    assert "stock_assets.models.ranking -> dagster" in result.stdout
