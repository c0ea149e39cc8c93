"""Fixtures of the hardening suite: repositories of `digits` v1 and v2 alone, so that a request
naming no model gets `digits`; the helpers are in tests/support."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.models import ModelRepo, write_repo


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepo:
    """A repository of the test's own, free to corrupt."""
    return write_repo(tmp_path / "models", colour=False)


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> ModelRepo:
    return write_repo(tmp_path_factory.mktemp("models"), colour=False)
