"""The loaded models: versions, input spec, thresholds, metrics, execution providers and the
traffic policy."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import State
from service.lookup import find_model
from service.schemas import ModelInfo, ModelList, Refusal, TrafficStatus, VersionInfo
from service.state import Deployment

router = APIRouter(prefix="/models", tags=["models"])


def _info(deployment: Deployment, name: str, default: str | None) -> ModelInfo:
    repository = deployment.repository
    versions = [VersionInfo.of(m) for m in repository.all() if m.name == name]
    return ModelInfo(
        name=name,
        latest_version=max(v.version for v in versions),
        default_version=repository.default_version(name) or 0,
        default_version_pinned=repository.is_pinned(name),
        is_default=name == default,
        traffic=TrafficStatus.of(deployment.traffic, name),
        versions=versions,
    )


@router.get("", response_model=ModelList)
async def list_models(state: State) -> ModelList:
    """Lists every loaded model with all its versions, and what the last reload refused."""
    deployment = state.deployment
    default = deployment.repository.default_name(state.settings.default_model)
    return ModelList(
        default_model=default,
        models=[_info(deployment, name, default) for name in deployment.repository.names()],
        refused=[Refusal.of(f) for f in state.refusals],
    )


@router.get("/{name}", response_model=ModelInfo, responses={404: {"description": "Not loaded"}})
async def get_model(name: str, state: State) -> ModelInfo:
    """Describes one loaded model and all its versions."""
    deployment = state.deployment
    repository = deployment.repository
    find_model(repository, name)
    return _info(deployment, name, repository.default_name(state.settings.default_model))
