"""The package as pip builds it: setuptools' real `build_py` on a copy of the sources, into a temporary folder.

`make setup` must be quiet (no "absent from the packages configuration" warnings) and a non-editable
install must hold every module and data file, mapped to where `posttrain` imports it from.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# source folder -> where it is installed (pyproject.toml's package-dir)
INSTALLED_AS = {
    "posttrain": "posttrain",
    "envs": "posttrain/envs",
    "rewards": "posttrain/rewards",
    "stages": "posttrain/stages",
    "configs": "posttrain/configs",
}
SHIPPED = {".py", ".yaml", ".json", ".typed"}


def source_files() -> set[str]:
    files = set()
    for folder, target in INSTALLED_AS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in SHIPPED and "__pycache__" not in path.parts:
                files.add(f"{target}/{path.relative_to(ROOT / folder).as_posix()}")
    return files


def test_build_is_quiet_and_ships_every_module_and_data_file(tmp_path):
    installed_setuptools = int(version("setuptools").split(".")[0])
    assert installed_setuptools >= 75, "needs setuptools>=75 as pip builds with (pip install -e '.[dev]')"
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in INSTALLED_AS:
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = tmp_path / "lib"
    result = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py", "--build-lib", str(built)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "Warning" in line or "absent from" in line]
    assert not warnings, "\n".join(warnings)
    installed = {p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file()}
    missing = source_files() - installed
    assert not missing, sorted(missing)
