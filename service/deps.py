"""What the routers take from the app: its `ServiceState`, as an `Annotated` dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.state import ServiceState


def state_of(request: Request) -> ServiceState:
    """The app's state; a plain call for code that is no dependency (the protocol's route)."""
    state: ServiceState = request.app.state.service
    return state


# Dependencies are `async def`: FastAPI runs a plain `def` in AnyIO's thread pool, a thread
# hop for every request, and under a flood of connections up to 40 threads (and malloc arenas).
async def get_state(request: Request) -> ServiceState:
    return state_of(request)


State = Annotated[ServiceState, Depends(get_state)]
