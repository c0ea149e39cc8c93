"""The sync and async clients: one `score` call, retried on 503 as `Retry-After` asks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import httpx

from client.images import ImageInput, to_part
from client.results import ScoreResult

DEFAULT_RETRIES = 3
MAX_RETRY_WAIT_S = 10.0
# The waits between tries, by name, so that a test can record them instead of waiting.
sleep = time.sleep
async_sleep = asyncio.sleep


class ServiceError(Exception):
    """An error answer: the HTTP status and the API's `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message

    @classmethod
    def of(cls, response: httpx.Response) -> ServiceError:
        try:
            error = response.json()["error"]
            return cls(response.status_code, str(error["code"]), str(error["message"]))
        except (ValueError, KeyError, TypeError):
            return cls(response.status_code, "http_error", response.text[:200])


def _retry_wait(response: httpx.Response, attempt: int, cap: float) -> float:
    """Seconds before the next try: `Retry-After` (seconds) when given, else backing off."""
    header = response.headers.get("Retry-After", "")
    try:
        wait = float(header)
    except ValueError:
        wait = 0.5 * 2**attempt
    return min(max(wait, 0.0), cap)


def _request(
    images: Iterable[ImageInput],
    model: str | None,
    version: int | None,
    threshold: str | float | None,
    explain: bool,
) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes, str]]]]:
    params = {"model": model, "version": version, "threshold": threshold}
    query = {k: str(v) for k, v in params.items() if v is not None}
    if explain:
        query["explain"] = "true"
    files = [("files", to_part(image, i)) for i, image in enumerate(images)]
    if not files:
        raise ValueError("score needs at least one image")
    return query, files


def _result(response: httpx.Response) -> ScoreResult:
    if response.status_code != 200:
        raise ServiceError.of(response)
    return ScoreResult.from_json(response.json())


class Client:
    """`Client(url)`; `retries` 503 answers are retried, waiting at most `max_retry_wait` each."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float = 30.0,
        retries: int = DEFAULT_RETRIES,
        max_retry_wait: float = MAX_RETRY_WAIT_S,
        **httpx_args: Any,
    ) -> None:
        self.retries, self.max_retry_wait = retries, max_retry_wait
        self._http = httpx.Client(base_url=base_url, timeout=timeout, **httpx_args)

    def score(
        self,
        images: Iterable[ImageInput],
        *,
        model: str | None = None,
        version: int | None = None,
        threshold: str | float | None = None,
        explain: bool = False,
    ) -> ScoreResult:
        """Scores images (paths, bytes, PIL images or arrays) in one request."""
        query, files = _request(images, model, version, threshold, explain)
        for attempt in range(self.retries + 1):
            response = self._http.post("/score", params=query, files=files)
            if response.status_code != 503 or attempt == self.retries:
                return _result(response)
            sleep(_retry_wait(response, attempt, self.max_retry_wait))
        raise AssertionError("unreachable")

    def models(self) -> dict[str, Any]:
        """`GET /models`: every loaded model, its versions, thresholds and metrics."""
        response = self._http.get("/models")
        if response.status_code != 200:
            raise ServiceError.of(response)
        body: dict[str, Any] = response.json()
        return body

    def ready(self) -> bool:
        return self._http.get("/health/ready").status_code == 200

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient:
    """The same calls as `Client`, awaited."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float = 30.0,
        retries: int = DEFAULT_RETRIES,
        max_retry_wait: float = MAX_RETRY_WAIT_S,
        **httpx_args: Any,
    ) -> None:
        self.retries, self.max_retry_wait = retries, max_retry_wait
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, **httpx_args)

    async def score(
        self,
        images: Iterable[ImageInput],
        *,
        model: str | None = None,
        version: int | None = None,
        threshold: str | float | None = None,
        explain: bool = False,
    ) -> ScoreResult:
        """Scores images (paths, bytes, PIL images or arrays) in one request."""
        query, files = _request(images, model, version, threshold, explain)
        for attempt in range(self.retries + 1):
            response = await self._http.post("/score", params=query, files=files)
            if response.status_code != 503 or attempt == self.retries:
                return _result(response)
            await async_sleep(_retry_wait(response, attempt, self.max_retry_wait))
        raise AssertionError("unreachable")

    async def models(self) -> dict[str, Any]:
        """`GET /models`: every loaded model, its versions, thresholds and metrics."""
        response = await self._http.get("/models")
        if response.status_code != 200:
            raise ServiceError.of(response)
        body: dict[str, Any] = response.json()
        return body

    async def ready(self) -> bool:
        return (await self._http.get("/health/ready")).status_code == 200

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
