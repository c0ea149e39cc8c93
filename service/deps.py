"""What the routers take from the app: FastAPI dependencies as `Annotated` aliases, and the
decoding pool."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.decode_pool import DecodePool
from service.state import ServiceState


# Dependencies are `async def`: FastAPI runs a plain `def` in AnyIO's thread pool, a thread
# hop for every request, and under a flood of connections up to 40 threads (and malloc arenas).
async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]


def decoder_of(request: Request) -> DecodePool:
    """The app's decoding pool. A plain call, not a dependency: /score is the only user, and
    FastAPI resolves each dependency again on every request."""
    decoder: DecodePool = request.app.state.decoder
    return decoder
