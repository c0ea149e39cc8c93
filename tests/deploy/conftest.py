"""Fixtures for the deployment tests: a tiny valid model repository for `deepsvdd serve`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.models import build_model


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding `tiny/1/model.onnx`, a valid Deep SVDD model file."""
    root = tmp_path_factory.mktemp("deploy") / "models"
    build_model(root, "tiny", 1)
    return root
