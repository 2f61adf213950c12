"""Reports built from run records: leaderboards, per-layer tables, bootstrap intervals,
paired comparisons, and published outputs (Markdown, LaTeX, CSV, JSON, plots, HTML).

- :mod:`.tables`: ``leaderboard(records, ci=...)``, ``layer_table(records, model)``, ``aggregate``.
- :mod:`.render`: display forms and ``print_and_write(records, out_dir)`` for ``mirprobe run``.
- :mod:`.stats`: cluster bootstrap over test tracks, intervals, paired comparison.
"""
