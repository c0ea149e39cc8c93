"""The try-out web page at `/`: its static files, its icon and the report figures beside each
model.

Nothing on the page comes from elsewhere: the Content-Security-Policy lets it load only
from this origin (and the maps' `data:` and uploads' `blob:` images).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response

from service.deps import State
from service.errors import ApiError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Where report figures of a model are looked for: beside its versions, or in `figures/`.
FIGURE_DIRS = (".", "figures")

router = APIRouter(tags=["page"], include_in_schema=False)


def _static(name: str, media_type: str) -> Response:
    return FileResponse(
        STATIC_DIR / name,
        media_type=media_type,
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
    )


@router.get("/")
async def page() -> Response:
    """The page to try the models."""
    return _static("index.html", "text/html; charset=utf-8")


@router.get("/favicon.ico")
async def favicon() -> Response:
    """The page's icon, an SVG (where browsers and crawlers look for it, and linked)."""
    return FileResponse(
        STATIC_DIR / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "max-age=86400"},
    )


@router.get("/ui/{asset}")
async def asset(asset: str) -> Response:
    """The page's script and style sheet."""
    if asset not in ASSETS:
        raise ApiError(404, "not_found", "Not Found")
    return _static(asset, ASSETS[asset])


def _figures(state: State, name: str) -> dict[str, Path]:
    """The PNGs found beside a loaded model's versions; request input only looks names up."""
    if name not in state.deployment.repository.names():
        raise ApiError(404, "model_not_found", f"model {name[:64]!r} is not loaded")
    model_dir = state.settings.models_dir / name
    found: dict[str, Path] = {}
    for sub in FIGURE_DIRS:
        folder = model_dir / sub
        if folder.is_dir():
            found.update({p.name: p for p in sorted(folder.glob("*.png")) if p.is_file()})
    return found


@router.get("/ui/figures/{name}")
async def figures(name: str, state: State) -> JSONResponse:
    """The report figures of a model (PNGs beside its versions), with their URLs."""
    names = sorted(_figures(state, name))
    return JSONResponse({"figures": [{"name": f, "url": f"/ui/figures/{name}/{f}"} for f in names]})


@router.get("/ui/figures/{name}/{figure}")
async def figure(name: str, figure: str, state: State) -> Response:
    """One report figure."""
    path = _figures(state, name).get(figure)
    if path is None:
        raise ApiError(404, "not_found", f"model {name!r} has no figure {figure[:100]!r}")
    return FileResponse(path, media_type="image/png")
