"""Administration of the traffic policies behind the admin token: read, set, remove, promote and
roll back. A change is written to the model's traffic.json and reaches every worker."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request

from service.deps import State
from service.errors import ApiError
from service.lookup import find_model
from service.routers.admin import Admin
from service.schemas import PromoteBody, TrafficAnswer, TrafficPolicyBody, TrafficStatus
from service.state import ServiceState
from service.traffic import TOTAL, TRAFFIC_FILE, PolicyError, TrafficPolicy, write_policy

log = logging.getLogger(__name__)
router = APIRouter(prefix="/admin/models", tags=["admin"])
_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Wrong or missing token"},
    404: {"description": "No token, or the model is not loaded"},
    409: {"description": "The policy cannot be written, or there is nothing to roll back to"},
    422: {"description": "A policy that cannot serve (the reason in the message)"},
}


def _answer(state: ServiceState, name: str) -> TrafficAnswer:
    deployment = state.deployment
    status = TrafficStatus.of(deployment.traffic, name)
    default = deployment.repository.default_version(name) or 0
    return TrafficAnswer(model=name, default_version=default, **status.model_dump())


async def _apply(
    request: Request, state: ServiceState, name: str, policy: TrafficPolicy | None
) -> TrafficAnswer:
    """Checks `policy` against what is loaded (422), writes it (None: removes the file), has
    this worker and the others read it, and answers what serves now."""
    find_model(state.deployment.repository, name)
    if policy is not None:
        try:
            policy.check(state.deployment.repository, name)
        except PolicyError as exc:
            raise ApiError(422, "invalid_policy", f"{exc}; nothing changed") from exc
    try:
        await asyncio.to_thread(write_policy, state.settings.models_dir / name, policy)
    except OSError as exc:
        raise ApiError(
            409, "policy_not_written", f"cannot write {name}/{TRAFFIC_FILE}: {exc.strerror}"
        ) from exc
    traffic, _ = await state.reload_traffic()
    if request.app.state.reload_sync is not None:
        request.app.state.reload_sync.announce(traffic=True)
    if name in traffic.errors:  # a version went away meanwhile
        raise ApiError(422, "invalid_policy", traffic.errors[name])
    log.info("traffic of %s set through the admin API: %s", name, policy and policy.to_json())
    return _answer(state, name)


@router.get("/{name}/traffic", response_model=TrafficAnswer, responses=_RESPONSES)
async def get_traffic(name: str, state: State, _: Admin) -> TrafficAnswer:
    """The model's traffic policy, and why its traffic.json was refused, if it was."""
    find_model(state.deployment.repository, name)
    return _answer(state, name)


@router.put("/{name}/traffic", response_model=TrafficAnswer, responses=_RESPONSES)
async def put_traffic(
    name: str, body: TrafficPolicyBody, request: Request, state: State, _: Admin
) -> TrafficAnswer:
    """Sets the model's weights per version (percent, adding up to 100) and its shadow."""
    try:
        policy = TrafficPolicy.parse(body.model_dump())
    except PolicyError as exc:
        raise ApiError(422, "invalid_policy", f"{exc}; nothing changed") from exc
    return await _apply(request, state, name, policy)


@router.delete("/{name}/traffic", response_model=TrafficAnswer, responses=_RESPONSES)
async def delete_traffic(name: str, request: Request, state: State, _: Admin) -> TrafficAnswer:
    """Removes the policy: the model's default version answers the requests naming none."""
    return await _apply(request, state, name, None)


@router.post("/{name}/promote", response_model=TrafficAnswer, responses=_RESPONSES)
async def promote(
    name: str, body: PromoteBody, request: Request, state: State, _: Admin
) -> TrafficAnswer:
    """Sends every request naming no version to `version`; the primary it replaces is kept
    for rollback, and the shadow stays unless it is the promoted version."""
    deployment = state.deployment
    find_model(deployment.repository, name)
    current = deployment.traffic.policy(name)
    replaced = current.primary if current else deployment.repository.default_version(name)
    if replaced == body.version:  # already the primary: keep what it replaced
        replaced = current.previous if current else None
    shadow = current.shadow if current and current.shadow != body.version else None
    policy = TrafficPolicy({body.version: TOTAL}, shadow, replaced)
    return await _apply(request, state, name, policy)


@router.post("/{name}/rollback", response_model=TrafficAnswer, responses=_RESPONSES)
async def rollback(name: str, request: Request, state: State, _: Admin) -> TrafficAnswer:
    """Promotes back the primary that the last promotion replaced."""
    find_model(state.deployment.repository, name)
    current = state.deployment.traffic.policy(name)
    if current is None or current.previous is None:
        raise ApiError(409, "nothing_to_roll_back", f"no earlier primary of {name!r} is recorded")
    policy = TrafficPolicy({current.previous: TOTAL}, current.shadow, current.primary)
    if policy.shadow == current.previous:
        policy = TrafficPolicy(policy.weights, None, policy.previous)
    return await _apply(request, state, name, policy)
