"""The offline tools stay apart from the request path: no service module outside
`service.offline` imports them."""

from __future__ import annotations

import ast
from pathlib import Path

import service

SERVICE_DIR = Path(service.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_request_path_module_imports_the_offline_tools() -> None:
    request_path = [
        p for p in SERVICE_DIR.rglob("*.py") if SERVICE_DIR / "offline" not in p.parents
    ]
    assert SERVICE_DIR / "app.py" in request_path
    offenders = {
        str(p.relative_to(SERVICE_DIR)): sorted(
            m for m in _imported_modules(p) if m.startswith("service.offline")
        )
        for p in request_path
    }
    assert {k: v for k, v in offenders.items() if v} == {}
