"""The defects benchmark's report: every piece in runs/ aggregated over seeds (mean +- std) into
defects.json and defects.md, with the goals marked met or not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.defects.plant import KINDS
from bench.harness.results import write_json, write_text

IMAGE_COLUMNS = ("other", *KINDS, "all_defects")
GOALS = {"image_auroc": 0.95, "hottest_on_defect": 0.80, "pixel_auroc": 0.95, "explain_ratio": 0.5}


def _split(piece: dict[str, Any]) -> str:
    return str(piece.get("split", "rows"))  # pieces from before the splits were all `rows`


def _key(piece: dict[str, Any]) -> tuple[str, str, str, int]:
    return (piece["surface"], _split(piece), piece["method"], piece["seed"])


def pieces(out: Path) -> list[dict[str, Any]]:
    """The runs' pieces, each (surface, split, method) served speed added to its seed's piece."""
    served = {
        _key(d): d["served_images_per_s"]
        for d in (json.loads(p.read_text()) for p in sorted((out / "served").glob("*.json")))
    }
    found = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    for piece in found:
        speed = served.get(_key(piece))
        if speed is not None:
            piece["served_images_per_s"] = speed
    return found


def _where(name: str, piece: dict[str, Any]) -> str:
    """`name` (a surface, `all` or a method) with the piece's split named unless it is
    `rows`."""
    split = _split(piece)
    return name if split == "rows" else f"{name} ({split})"


def failed(all_pieces: list[dict[str, Any]]) -> list[str]:
    """'surface/method seed N: error' for each piece whose training failed."""
    return [
        f"{_where(p['surface'], p)}/{p['method']} seed {p['seed']}: {p['training']['error']}"
        for p in all_pieces
        if "error" in p["training"]
    ]


def _stat(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def _paths(piece: dict[str, Any]) -> dict[str, float]:
    """Flattens a piece's figures to 'section/name' -> value."""
    flat = {f"image_auroc/{k}": v for k, v in piece["image_auroc"].items()}
    for kind, figures in piece.get("maps", {}).items():
        flat.update({f"maps/{kind}/{name}": v for name, v in figures.items()})
    flagged = piece.get("at_threshold", {}).get("flagged", {})
    flat.update({f"flagged/{k}": v for k, v in flagged.items()})
    flat.update({f"raw/{k}": v for k, v in piece["raw_images_per_s"].items()})
    flat.update({f"served/{k}": v for k, v in piece.get("served_images_per_s", {}).items()})
    flat["train_seconds"] = piece["training"]["train_seconds"]
    flat["model_bytes"] = piece["model_bytes"]
    return flat


def aggregate(all_pieces: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """'surface/method' (and 'all/method', every surface pooled, last) -> figure ->
    mean/std/n, by method; a split other than `rows` is named after the surface, as in
    'brick (blocks)/patch', and pooled apart."""
    groups: dict[str, list[dict[str, float]]] = {}
    for piece in all_pieces:
        if "error" in piece["training"]:
            continue
        flat = _paths(piece)
        groups.setdefault(f"{_where(piece['surface'], piece)}/{piece['method']}", []).append(flat)
        groups.setdefault(f"{_where('all', piece)}/{piece['method']}", []).append(flat)
    order = sorted(groups, key=lambda g: (g.startswith("all"), g.split("/")[1], g))
    return {
        group: {
            name: _stat([f[name] for f in groups[group] if name in f])
            for name in sorted({n for f in groups[group] for n in f})
        }
        for group in order
    }


def _cell(figures: dict[str, Any], name: str, digits: int = 3) -> str:
    """'mean ± std' over the runs; the mean alone for one run."""
    stat = figures.get(name)
    if stat is None:
        return "-"
    if stat["n"] == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def commands(all_pieces: list[dict[str, Any]]) -> list[str]:
    """The training command of each method's first piece (the others differ in data and seed)."""
    first: dict[str, str] = {}
    for piece in all_pieces:
        first.setdefault(_where(piece["method"], piece), piece["training"]["command"])
    return [f"- {method}: `{command}`" for method, command in first.items()]


def goals(figures: dict[str, Any]) -> dict[str, bool | None]:
    """Each goal met or not by one group's means (None: not measured)."""
    worst = min(figures[f"image_auroc/{k}"]["mean"] for k in KINDS)
    hot, pixel = (
        figures.get("maps/all_defects/hottest_on_defect"),
        figures.get("maps/all_defects/pixel_auroc"),
    )
    plain, maps = figures.get("served/score"), figures.get("served/score_explain")
    return {
        "image_auroc >= 0.95 every kind": worst >= GOALS["image_auroc"],
        "hottest cell on the defect >= 80%": None
        if hot is None
        else hot["mean"] >= GOALS["hottest_on_defect"],
        "pixel AUROC >= 0.95": None if pixel is None else pixel["mean"] >= GOALS["pixel_auroc"],
        "/score?explain=true >= 50% of /score": None
        if plain is None or maps is None
        else maps["mean"] >= GOALS["explain_ratio"] * plain["mean"],
    }


def _label(group: str, figures: dict[str, Any]) -> str:
    """'surface/method (n runs)': how many (surface, seed) pieces the means are over."""
    n = figures["image_auroc/all_defects"]["n"]
    return f"{group} ({n} run{'s' if n > 1 else ''})"


def _image_table(agg: dict[str, dict[str, Any]]) -> list[str]:
    head = "| surface / method | " + " | ".join(IMAGE_COLUMNS) + " |"
    rows = [head, "| --- |" + " ---: |" * len(IMAGE_COLUMNS)]
    for group, figures in agg.items():
        cells = [_cell(figures, f"image_auroc/{c}") for c in IMAGE_COLUMNS]
        rows.append(f"| {_label(group, figures)} | " + " | ".join(cells) + " |")
    return rows


def threshold_table(agg: dict[str, dict[str, Any]]) -> list[str]:
    columns = ("good", *IMAGE_COLUMNS[:-1])
    rows = ["| surface / method | good (false alarms) | " + " | ".join(columns[1:]) + " |"]
    rows.append("| --- |" + " ---: |" * len(columns))
    for group, figures in agg.items():
        if f"flagged/{columns[0]}" not in figures:
            continue
        cells = [_cell(figures, f"flagged/{c}", 2) for c in columns]
        rows.append(f"| {_label(group, figures)} | " + " | ".join(cells) + " |")
    return rows


def _map_table(agg: dict[str, dict[str, Any]]) -> list[str]:
    rows = [
        "| surface / method | defects | pixel AUROC | PRO (FPR ≤ 0.3) | hottest cell on defect |"
    ]
    rows.append("| --- | --- | ---: | ---: | ---: |")
    for group, figures in agg.items():
        for kind in ("all_defects", *KINDS):
            cells = [
                _cell(figures, f"maps/{kind}/{n}")
                for n in ("pixel_auroc", "pro_0.3", "hottest_on_defect")
            ]
            rows.append(f"| {_label(group, figures)} | {kind} | " + " | ".join(cells) + " |")
    return rows


def _speed_table(agg: dict[str, dict[str, Any]]) -> list[str]:
    names = ("train_seconds", "raw/scores", "raw/with_maps", "served/score", "served/score_explain")
    head = ("train s", "raw ORT images/s", "raw, with maps", "/score", "/score?explain=true")
    rows = ["| surface / method | " + " | ".join(head) + " |"]
    rows.append("| --- |" + " ---: |" * len(names))
    for group, figures in agg.items():
        speeds = " | ".join(_cell(figures, n, 1) for n in names)
        rows.append(f"| {_label(group, figures)} | {speeds} |")
    return rows


def markdown(agg: dict[str, dict[str, Any]], all_pieces: list[dict[str, Any]], notes: str) -> str:
    first = all_pieces[0]
    met = {g: goals(f) for g, f in agg.items() if g.startswith("all")}
    lines = [
        "# Defects in real photographs: detection and localisation",
        "",
        notes.strip(),
        "",
        f"Schedule: `{json.dumps(first['schedule'])}`; CPU: {first['cpu']}. Training "
        "commands (each piece's is in defects.json):",
        "",
        *commands(all_pieces),
        "",
        "## Image AUROC (mean ± std over the runs: seeds, and surfaces for all/)",
        "",
        *_image_table(agg),
        "",
        "## At the model's own threshold: the share of each test class flagged",
        "",
        "Each model's default threshold (q0.95: 5% of its held-out normal crops lie above it). "
        "On `good` it is the false-alarm rate on normal crops from rows never trained on; "
        "pieces measured before this table was added have no row.",
        "",
        *threshold_table(agg),
        "",
        "## Maps (pixel AUROC and PRO pool the good test images with the defective ones)",
        "",
        *_map_table(agg),
        "",
        "## Speed (one thread; /score measured on seed 0 only)",
        "",
        *_speed_table(agg),
        "",
        "## Goals (all report surfaces pooled)",
        "",
        *[
            f"- {group}: " + "; ".join(f"{goal}: {_met(ok)}" for goal, ok in checks.items())
            for group, checks in met.items()
        ],
        "",
        "## Runs whose training failed (left out of the figures above)",
        "",
        *([f"- {line}" for line in failed(all_pieces)] or ["- none"]),
        "",
    ]
    return "\n".join(lines)


def _met(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "NOT met")


def write(out: Path) -> None:
    """Rebuilds defects.json and defects.md from runs/*.json (notes from notes.md)."""
    all_pieces = pieces(out)
    if not all_pieces:
        return
    agg = aggregate(all_pieces)
    notes_file = out / "notes.md"
    notes = notes_file.read_text() if notes_file.exists() else ""
    write_json(
        out / "defects.json",
        {"aggregate": agg, "goals": {g: goals(f) for g, f in agg.items()}, "pieces": all_pieces},
    )
    write_text(out / "defects.md", markdown(agg, all_pieces, notes))
