"""The peer server of bench/serving: BentoML in a virtual environment of its own.

BentoML pins its own versions of starlette, pydantic and more, so it lives in
bench/serving/.peer-venv (git-ignored), made here from PyPI on first use, with the same ONNX
Runtime, NumPy, Pillow and libspng versions as the service's environment so that only the
serving stack differs. The peer service itself is bench/serving/peer_bento.py.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

SERVING_DIR = Path(__file__).resolve().parent
REPO = SERVING_DIR.parents[1]
PEER_VENV = SERVING_DIR / ".peer-venv"
BENTOML = "bentoml==1.4.40"  # the release peer_bento.py was written against
# Packages installed at the version this environment has (onnxruntime-gpu's CPU twin).
SAME_VERSIONS = {
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime"),
    "numpy": ("numpy",),
    "pillow": ("pillow",),
    "pyspng": ("pyspng",),
    "fastapi": ("fastapi",),  # service.errors, which service.decoding imports
}


def _version_here(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def requirements() -> list[str]:
    """BentoML and the packages shared with the service, pinned to this environment's."""
    pinned = []
    for package, names in SAME_VERSIONS.items():
        version = _version_here(names)
        pinned.append(f"{package}=={version}" if version else package)
    return [BENTOML, *pinned]


def peer_python(venv: Path = PEER_VENV) -> Path:
    """The peer environment's Python, made (or completed) with pip when it lacks BentoML."""
    python = venv / "bin" / "python"
    wanted = requirements()
    stamp = venv / ".installed"
    if python.exists() and stamp.exists() and stamp.read_text() == "\n".join(wanted):
        return python
    print(f"making the peer environment {venv}: {' '.join(wanted)}", file=sys.stderr)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *wanted], check=True)
    stamp.write_text("\n".join(wanted))
    return python


def bentoml_command(python: Path, port: int) -> list[str]:
    """`bentoml serve` of peer_bento.py on 127.0.0.1:`port` (run it in bench/serving/)."""
    bentoml = python.parent / "bentoml"
    return [
        *(str(bentoml), "serve", "peer_bento:Scorer"),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]


def bentoml_env(model: Path, workers: int, threads: int, home: Path) -> dict[str, str]:
    return {
        "PEER_MODEL": str(model),
        "PEER_WORKERS": str(workers),
        "PEER_THREADS": str(threads),
        "PYTHONPATH": str(REPO),  # modelfile/ and service/ for the decoders
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
    }
