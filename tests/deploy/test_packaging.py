"""What `pip install .` installs: the wheel holds every module, the serving install (no
extras) has no torch and serves, the web page's static files ship, and `training/` and
`service/` never import each other."""

from __future__ import annotations

import ast
import json
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ROOT
from tests.support.servers import free_port, served

PACKAGES = ("cli", "client", "modelfile", "service", "training")
INSTALL_TIMEOUT_S = 900


def source_copy(tmp_path: Path) -> Path:
    """The project's packaging files and packages, copied so that a build leaves nothing
    in the checkout."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return source


def test_the_wheel_holds_every_module_of_every_package(tmp_path: Path) -> None:
    source = source_copy(tmp_path)
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
    assert {"service/app.py", "training/export.py", "cli/main.py", "modelfile/layout.py"} <= sources
    assert sources - shipped == set()
    page = {f"service/static/{p.name}" for p in (ROOT / "service" / "static").iterdir()}
    assert page and page - shipped == set()  # the web page at /
    assert any(name.endswith("entry_points.txt") for name in shipped)


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every module `path` imports, nested imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("training", {"service", "cli"}),
        ("service", {"training", "cli", "torch"}),
        ("modelfile", {"training", "service", "cli", "torch"}),
        ("client", {"training", "service", "cli", "torch"}),
    ],
)
def test_the_packages_keep_to_their_side(package: str, forbidden: set[str]) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert len(files) > 3
    offending = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & forbidden)
        for path in files
        if imported_modules(path) & forbidden
    }
    assert offending == {}


@pytest.fixture(scope="module")
def serving_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with `pip install <the project>`, no extras: the serving install."""
    work = tmp_path_factory.mktemp("serving-install")
    source = source_copy(work)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(source)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return venv


def in_venv(venv: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)
def test_the_serving_install_has_no_torch(serving_venv: Path, tmp_path: Path) -> None:
    found = in_venv(serving_venv, "python", "-c", "import torch", cwd=tmp_path)
    assert found.returncode != 0
    assert "No module named 'torch'" in found.stderr
    where = in_venv(
        serving_venv, "python", "-c", "import service; print(service.__file__)", cwd=tmp_path
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(serving_venv)), where.stdout


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)
def test_the_serving_install_serves_and_stops_on_sigterm(
    serving_venv: Path, tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the venv alone, not this checkout
    port = free_port()
    argv = [str(serving_venv / "bin" / "deepsvdd"), "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--models-dir", str(tiny_models_dir)]
    with served(tiny_models_dir, tmp_path, argv=argv, port=port, cwd=tmp_path) as server:
        ready = httpx.get(f"{server.url}/health/ready", timeout=10)
        assert ready.status_code == 200
        models = httpx.get(f"{server.url}/models", timeout=10)
        assert models.status_code == 200 and "tiny" in models.text
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0, server.log_text()
    assert "Traceback" not in server.log_text()


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)
def test_the_serving_install_inspects_a_model(
    serving_venv: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    shown = in_venv(
        serving_venv, "deepsvdd", "inspect", "tiny", "--models-dir", str(tiny_models_dir),
        cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    meta = json.loads(shown.stdout)
    assert (meta["name"], meta["version"]) == ("tiny", 1)
    assert meta["input"] == {"channels": 1, "height": 28, "width": 28, "color": "L"}
