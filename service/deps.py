"""FastAPI dependencies shared by the routers, as `Annotated` aliases."""

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


async def get_decoder(request: Request) -> DecodePool:
    decoder: DecodePool = request.app.state.decoder
    return decoder


Decoder = Annotated[DecodePool, Depends(get_decoder)]
