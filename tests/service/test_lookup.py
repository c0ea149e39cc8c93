"""The one model lookup of /score, /v2 and /models: the model a request names, or the 404
naming what is loaded instead, and the 503 while nothing is ready."""

from __future__ import annotations

import pytest

from service.errors import ApiError
from service.lookup import find_model, serving
from service.metrics import Metrics
from service.repository import Repository, SessionConfig, load_repository
from service.state import ServiceState
from tests.support.models import ModelRepo
from tests.support.servers import make_settings


@pytest.fixture(scope="module")
def repository(model_repo: ModelRepo) -> Repository:
    loaded, failures = load_repository(model_repo.path, SessionConfig(["CPUExecutionProvider"], 1))
    assert not failures
    return loaded


@pytest.mark.parametrize(("version", "found"), [(None, 2), (1, 1), ("1", 1), ("2", 2)])
def test_a_loaded_version_is_found(repository: Repository, version: int | str, found: int) -> None:
    model = find_model(repository, "digits", version)
    assert (model.name, model.version) == ("digits", found)


@pytest.mark.parametrize(
    ("name", "version", "code", "message"),
    [
        ("nope", None, "model_not_found", "model 'nope' is not loaded (loaded: colour, digits)"),
        ("digits", 3, "version_not_found", "has no version 3 (loaded: [1, 2], default: 2)"),
        ("digits", "3", "version_not_found", "has no version 3 (loaded: [1, 2], default: 2)"),
        ("digits", "v1", "version_not_found", "version 'v1' is not a number"),
        (None, None, "model_not_found", "no default model is loaded"),
    ],
)
def test_a_missing_model_is_a_404_naming_what_is_loaded(
    repository: Repository, name: str | None, version: int | str | None, code: str, message: str
) -> None:
    with pytest.raises(ApiError) as caught:
        find_model(repository, name, version)
    assert (caught.value.status, caught.value.code) == (404, code)
    assert message in caught.value.message


def test_nothing_is_served_before_the_models_are_ready(model_repo: ModelRepo) -> None:
    state = ServiceState(make_settings(model_repo.path), Metrics())
    try:
        with pytest.raises(ApiError) as caught:
            serving(state, "digits", None)
    finally:
        state.decoder.close()
    assert (caught.value.status, caught.value.code) == (503, "not_ready")
    assert caught.value.headers == {"Retry-After": "1"}
