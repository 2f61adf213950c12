"""The checkpoint series of a work folder on the published page (``mirprobe publish``).

Every series with a manifest under ``<work_dir>/series/`` gets a section: its score-by-step
table with intervals, the score-by-step plot and step × layer heatmap of each task, the step ×
layer tables and any checkpoint that failed; its tables also go to ``<out>/series/<name>/`` and
its figures to ``<out>/plots/``.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Sequence
from pathlib import Path

from mirprobe.report import html
from mirprobe.report import series as S
from mirprobe.report.series_plots import layer_heatmaps, score_curves


def series_sections(manifests: Sequence[S.Manifest], out_dir: Path, records_dir: Path, *,
                    ci: bool, n_boot: int, seed: int) -> list[tuple[str, str]]:
    """(heading, HTML) of each series; writes its tables and figures under ``out_dir``."""
    sections = []
    for manifest in manifests:
        name = manifest.name
        table, layers = S.write_tables(manifest, Path(out_dir) / "series" / name, records_dir,
                                       console=False, ci=ci, n_boot=n_boot, seed=seed)
        parts = []
        if len(table):
            curves = score_curves(table, Path(out_dir) / "plots", name)
            heat = layer_heatmaps(layers, Path(out_dir) / "plots", name)
            parts.append(html.table(S.score_display(table),
                                    caption=S.caption(manifest, ci=ci, n_boot=n_boot, seed=seed)))
            for task in S.tasks_of(table):
                parts.append(html.figure(curves[task][0], f"{name} · {task}: score by training step"))
                parts.append(html.figure(heat[task][0], f"{name} · {task}: step × layer"))
            for task in S.tasks_of(layers):
                parts.append(f"<h3>{html_lib.escape(task)} by step and layer</h3>"
                             + html.table(S.layer_display(layers, task), caption=S.LAYER_CAPTION))
        else:
            parts.append("<p>No checkpoint evaluated yet.</p>")
        failed = S.failed_lines(manifest)
        if failed:
            parts.append("<h3>Failed checkpoints</h3><ul>"
                         + "".join(f"<li>{html_lib.escape(x)}</li>" for x in failed) + "</ul>")
        sections.append((f"Series: {name}", "\n".join(parts)))
    return sections
