"""Why a models directory gave nothing to serve, said so that the reader knows what to move.

The repository loader skips what does not fit `<name>/<version>/model.onnx`; when nothing is
left, this walks the directory once more and names what it found instead.
"""

from __future__ import annotations

from pathlib import Path

from modelfile import MODEL_FILE
from modelfile.metadata import is_valid_name
from service.repository import LoadFailure

LAYOUT = f"<name>/<version>/{MODEL_FILE}"
# How many entries of a directory a message lists before it says "and N more".
_SHOWN = 5


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _visible(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    except OSError:
        return []


def _model_dir_problem(model_dir: Path) -> str | None:
    """What keeps one `<name>/` directory from holding a servable version, if anything."""
    name = model_dir.name
    entries = _visible(model_dir)
    versions = [p for p in entries if p.is_dir() and p.name.isdigit()]
    onnx_files = [p.name for p in entries if p.is_file() and p.suffix == ".onnx"]
    if not versions:
        if onnx_files:
            return (
                f"{name}/{onnx_files[0]} has no version directory: move it to {name}/1/{MODEL_FILE}"
            )
        return f"{name}/ has no version directory (expected {name}/1/{MODEL_FILE})"
    missing = [v for v in versions if not (v / MODEL_FILE).is_file()]
    if len(missing) == len(versions):
        first = missing[0]
        found = [p.name for p in _visible(first)]
        what = f"found {_listing(found)}" if found else "it is empty"
        return f"{name}/{first.name}/ has no {MODEL_FILE} ({what})"
    return None


def layout_problems(models_dir: Path) -> list[str]:
    """What under `models_dir` looks meant to be served but is not in `<name>/<version>/`."""
    problems: list[str] = []
    entries = _visible(models_dir)
    for file_name in (p.name for p in entries if p.is_file() and p.suffix == ".onnx"):
        stem = Path(file_name).stem
        name = stem if stem != Path(MODEL_FILE).stem and is_valid_name(stem) else "<name>"
        problems.append(
            f"{file_name} sits directly in the models directory: move it to {name}/1/{MODEL_FILE}"
        )
    for model_dir in (p for p in entries if p.is_dir()):
        problem = _model_dir_problem(model_dir)
        if problem is not None:
            problems.append(problem)
    return problems


def explain_nothing_served(models_dir: Path, failures: list[LoadFailure]) -> str:
    """One line on why `models_dir` gave no model to serve: what it expected, what it found."""
    where = f"models directory {str(models_dir)!r}"
    if not models_dir.is_dir():
        return f"{where} does not exist (expected {LAYOUT} under it)"
    entries = _visible(models_dir)
    if not entries:
        return f"{where} is empty (expected {LAYOUT} under it)"
    problems = layout_problems(models_dir)
    for failure in failures:
        version = f" version {failure.version}" if failure.version else ""
        problems.append(f"{failure.model}{version} was refused: {failure.reason}")
    if not problems:
        found = _listing([p.name for p in entries])
        problems.append(f"it holds {found}, none of them {LAYOUT}")
    return f"no model to serve in {where}: " + "; ".join(problems)
