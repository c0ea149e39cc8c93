"""A Python client of the deepsvdd-serve HTTP API, sync and async; httpx, no torch.

from client import Client
with Client("http://127.0.0.1:8000") as c:
    result = c.score(["shoe.png"], model="fashion-mnist-sneaker", explain=True)
"""

from client.http import AsyncClient, Client, ServiceError
from client.images import ImageInput
from client.results import AnomalyMap, ImageResult, ScoreResult, Threshold

__all__ = [
    "AnomalyMap",
    "AsyncClient",
    "Client",
    "ImageInput",
    "ImageResult",
    "ScoreResult",
    "ServiceError",
    "Threshold",
]
