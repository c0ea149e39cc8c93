"""What a request names, looked up in what is served: the model version (404 naming what is
loaded instead, 503 while not ready) and the threshold (422), for /score and /v2 alike."""

from __future__ import annotations

from modelfile.metadata import ModelMetadata, resolve_threshold
from service.batching import Batcher
from service.errors import ApiError
from service.repository import LoadedModel, Repository
from service.schemas import ThresholdUsed
from service.state import ServiceState

# A version given as a URL path segment (the protocol's) is a string; /score's is a number.
Version = int | str | None


def _number(version: Version) -> int | None:
    """The version as a number (None: the model's default version); 404 for a path segment
    that is not one."""
    if not isinstance(version, str):
        return version
    if not (version.isascii() and version.isdigit()) or len(version) > 10:
        raise ApiError(404, "version_not_found", f"version {version[:16]!r} is not a number")
    return int(version)


def find_model(repository: Repository, name: str | None, version: Version = None) -> LoadedModel:
    """`name` at `version` (None: its default version); 404 naming what is loaded instead."""
    if name is None:
        raise ApiError(404, "model_not_found", "no default model is loaded")
    number = _number(version)
    model = repository.get(name, number)
    if model is None:
        raise ApiError(404, *repository.why_missing(name, number))
    return model


def serving(state: ServiceState, name: str | None, version: Version) -> tuple[Batcher, LoadedModel]:
    """The model that scores a request, and its batcher, from the one snapshot the request
    keeps using. `name` None: the default model; `version` None: the one the model's traffic
    policy draws, else its default version. 503 while not ready, 404 as `find_model`."""
    if not state.serving:
        raise state.unready_error()
    deployment = state.deployment
    repository = deployment.repository
    if name is None:
        name = repository.default_name(state.settings.default_model)
    if version is None and name is not None:
        version = deployment.traffic.route(name, state.traffic_rng)
    model = find_model(repository, name, version)
    return deployment.batcher(model), model


def threshold_used(meta: ModelMetadata, requested: str | None) -> ThresholdUsed:
    """The `threshold` a request asks for, resolved by the model file's rule; 422 if unusable."""
    try:
        name, value = resolve_threshold(meta, requested)
    except ValueError as exc:
        raise ApiError(422, "invalid_parameters", str(exc)) from exc
    return ThresholdUsed(name=name, value=value)
