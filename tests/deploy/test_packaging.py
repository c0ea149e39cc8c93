"""The wheel that `pip install .` builds (and the Docker image installs) holds every module
and the web page's static files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cli", "client", "modelfile", "service", "training")


def test_the_wheel_holds_every_module_of_both_packages(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy, so that the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("*.pyc"))
    build = ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run(
        [sys.executable, "-m", "pip", *build, str(source)],
        check=True,
        cwd=tmp_path,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("deepsvdd_serve-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    assert sources - shipped == set()
    page = {f"service/static/{p.name}" for p in (ROOT / "service" / "static").iterdir()}
    assert page and page - shipped == set()  # the web page at /
    assert any(name.endswith("entry_points.txt") for name in shipped)
