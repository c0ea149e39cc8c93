"""decode.md from decode.json's results: the timing tables and the AUC table."""

from __future__ import annotations

from typing import Any


def _gap(gap: dict[str, float]) -> str:
    return f"{gap['mean_abs']:.2f} / {gap['max_abs']}"


def jpeg_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| photograph | JPEG | model | mean size | full ms | reduced ms | speed-up "
        "| pixel gap (mean / max) | reduced 1x ms | 1x speed-up | 1x pixel gap |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} ({r['pixels']}) | {r['jpeg']} | {r['model']} | {r['mean_kib']} KiB "
            f"| {r['full_ms']:.2f} | {r['reduced_ms']:.2f} | {r['reduced_speed_up']:.1f}x "
            f"| {_gap(r['reduced_pixel_gap'])} | {r['reduced_1x_ms']:.2f} "
            f"| {r['reduced_1x_speed_up']:.1f}x | {_gap(r['reduced_1x_pixel_gap'])} |"
        )
    return lines


def lossless_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| photograph | format | model | full decode ms | reduce to 2x ms | 2x pixel gap "
        "| reduce to 1x ms | 1x pixel gap |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['format']} | {r['model']} | {r['full_ms']:.2f} "
            f"| {r['reduce_2x_ms']:.2f} | {_gap(r['reduce_2x_pixel_gap'])} "
            f"| {r['reduce_1x_ms']:.2f} | {_gap(r['reduce_1x_pixel_gap'])} |"
        )
    return lines


def quality_table(quality: dict[str, Any]) -> list[str]:
    summary = quality["summary"]
    lines = [
        "| normal class | full AUC | reduced AUC | gap | reduced 1x AUC | 1x gap |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [(n, m, summary["gap"][n]) for n, m in summary["mean_auc"].items()]
    rows.append(("all", summary["overall"], summary["overall_gap"]))
    for name, means, gap in rows:
        lines.append(
            f"| {name} | {means['full']:.4f} | {means['reduced']:.4f} | {gap['reduced']:+.4f} "
            f"| {means['reduced_1x']:.4f} | {gap['reduced_1x']:+.4f} |"
        )
    return lines


def seeds_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| normal class | seed | full | reduced | reduced 1x |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    keys = sorted({(r["normal"], r["seed"]) for r in runs})
    for normal, seed in keys:
        auc = {r["arm"]: r["auc"] for r in runs if (r["normal"], r["seed"]) == (normal, seed)}
        lines.append(
            f"| {normal} | {seed} | {auc['full']:.4f} | {auc['reduced']:.4f} "
            f"| {auc['reduced_1x']:.4f} |"
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    before, after = results["machine_before"], results["machine_after"]
    lines = [
        "# Decoding photographs: full against reduced JPEG decoding",
        "",
        f"Command: `{results['command']}` ({results['seconds']:.0f} s). Machine: "
        f"{before['cpus']} CPUs ({before['cpu']}), Python {before['python']}; load average "
        f"{before['load_average']} before, {after['load_average']} after (other jobs shared "
        "the machine: times are upper bounds).",
        "",
        "## Time per image, one thread",
        "",
        "`service.decoding.decode_pixels` (Pillow, then the shared policy) on four package "
        "photographs of scikit-image (astronaut, coffee, chelsea, rocket) scaled up with "
        "Lanczos to 4:3 camera sizes (the serving benchmark uses real 12 MP camera "
        "photographs, from Debian's lomiri-wallpapers-16.04) and saved "
        "as JPEG, quality 90; the best of the passes. *reduced* is the product's policy (DCT "
        "scaling to at least twice the model's input); *reduced 1x* decodes straight to the "
        "input size, the variant rejected below. Pixel gap: mean and largest absolute "
        "difference to the full decode's pixels (0-255).",
        "",
        *jpeg_table(results["jpeg"]),
        "",
        "PNG and WebP: both policies decode them in full. Reducing after the decode "
        "(`Image.reduce` by the largest whole factor that leaves at least twice, or once, the "
        "input, then the policy) was measured as the alternative, on astronaut and coffee:",
        "",
        *lossless_table(results["lossless"]),
    ]
    quality = results.get("quality")
    if quality is not None:
        s = quality["schedule"]
        lines += [
            "",
            "## Detection quality, retrained under each policy",
            "",
            f"A folder of 256 x 256 JPEG crops (quality 90, at random places of the package "
            f"photographs scaled by 1.5): {s['n_train']} training crops of the normal "
            f"photograph, {s['n_test']} test crops of each of the seven (brick, camera, "
            "coffee, grass, gravel, astronaut, chelsea; grey or colour as the photograph is). "
            "Deep SVDD (one-class, the folder's default network) at "
            f"{s['image_size']} x {s['image_size']} grey, {s['pretrain_epochs']} DCAE "
            f"pretraining epochs and {s['epochs']} epochs, seeds {s['seeds']}, one torch "
            "thread: a short schedule. Test AUC, mean over the seeds:",
            "",
            *quality_table(quality),
            "",
            "Every run:",
            "",
            *seeds_table(quality["runs"]),
        ]
    return "\n".join(lines) + "\n"
