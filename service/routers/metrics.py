"""The Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.deps import State

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(state: State) -> Response:
    """Serves every deepsvdd_* metric in the Prometheus text format."""
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)
