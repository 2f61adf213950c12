"""Published outputs: the same numbers in every format, the HTML page drawn by Chromium, CLI."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from test_report_fixtures import register_toys, toy_tasks, write_suite  # noqa: F401 - fixture

from mirprobe.cli import main
from mirprobe.report.publish import publish

NUM = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _numbers(cells: list[str]) -> list[list[str]]:
    return [NUM.findall(c) for c in cells]


class _Rows(HTMLParser):
    """Cell texts of the table with id ``leaderboard``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in = self._cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._in = dict(attrs).get("id") == "leaderboard"
        elif self._in and tag == "tr":
            self.rows.append([])
        elif self._in and tag == "td":
            self._cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = False
        elif tag == "td":
            self._cell = False

    def handle_data(self, data):
        if self._in and self._cell:
            self.rows[-1][-1] += data


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """One published suite shared by the tests of this module (toy tasks registered)."""
    tmp = tmp_path_factory.mktemp("published")
    with pytest.MonkeyPatch.context() as mp:
        register_toys(mp, tmp / "plugins")
        store, records = write_suite(tmp / "records")
        paths = publish(records, tmp / "out", records_dir=store.root, n_boot=200, seed=0)
    return paths, records


def test_provenance_names_datasets_without_local_paths(published):
    paths, records = published
    rows = json.loads(paths["json"].read_text())["provenance"]
    assert {(r["task"], r["dataset"], r["dataset digest"]) for r in rows} == {
        (rec.task, rec.dataset.folder, rec.dataset.digest) for rec in records}
    page = paths["html"].read_text()
    assert records[0].dataset.digest in page
    assert not re.search(r"<td[^>]*>/", page), "a cell of the page starts with an absolute path"


def test_formats_carry_the_same_numbers(published):
    paths, records = published
    md = [line.strip("|").split(" | ") for line in paths["md"].read_text().split("## Layers")[0]
          .splitlines() if line.startswith("| ") and not line.startswith("| model")]
    md = {r[0].strip(): _numbers([c.strip() for c in r[1:]]) for r in md}
    tex_text = re.sub(r"\\textbf\{([^}]*)\}", r"\1", paths["tex"].read_text().split("\\end{table}")[0])
    tex = {line.split(" & ")[0]: _numbers(line.removesuffix(r" \\").split(" & ")[1:])
           for line in tex_text.splitlines() if " & " in line and not line.startswith("model")}
    parser = _Rows()
    parser.feed(paths["html"].read_text())
    page = {r[0]: _numbers(r[1:]) for r in parser.rows if r}
    assert set(md) == {"good", "weak", "chance"}
    assert md == tex == page
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    tasks = ["toyclass", "toytags"]
    for row in rows:
        cell = md[row["model"]][tasks.index(row["task"])]
        assert [float(x) for x in cell[:3]] == [float(row["score"]), float(row["ci_low"]),
                                                float(row["ci_high"])]
        assert float(md["chance"][tasks.index(row["task"])][0]) == float(row["chance"])
        rec = next(r for r in records if r.model == row["model"] and r.task == row["task"])
        assert float(row["score"]) == round(rec.best.test[rec.selection_metric] * 100, 1)
    for name in ("heatmap.png", "heatmap.svg", "layers_toyclass.png", "layers_toytags.svg"):
        assert (paths["plots"] / name).stat().st_size > 1000
    assert "\\toprule" in paths["tex"].read_text() and "\\textbf{" in paths["tex"].read_text()


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


def _screenshot(browser: str, page: Path, out: Path) -> np.ndarray:
    import matplotlib.image

    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={out.parent / 'profile'}", "--window-size=1200,1400",
                    f"--screenshot={out}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    return (matplotlib.image.imread(out)[..., :3] * 255).round()


def _share(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> float:
    return float((np.abs(img - np.array(rgb)).max(-1) <= tol).mean())


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed "
                    "(apt-get install -y chromium); CI installs it")
def test_html_page_draws_tables_and_plots(published, tmp_path):
    paths, _ = published
    browser = _chromium()
    img = _screenshot(browser, paths["html"], tmp_path / "page.png")
    header, line_a, line_b = (31, 78, 121), (31, 119, 180), (255, 127, 14)  # table head, C0, C1
    assert _share(img, header) > 0.002, "sortable table header not drawn"
    assert _share(img, line_a) > 0.0005 and _share(img, line_b) > 0.0005, "layer curves not drawn"
    # Control: the same page without its figures shows no curve colours, so the check can fail.
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', paths["html"].read_text()))
    img = _screenshot(browser, bare, tmp_path / "bare.png")
    assert _share(img, header) > 0.002
    assert _share(img, line_b) < 0.0001


def test_cli_commands(tmp_path, toy_tasks, capsys):  # noqa: F811
    write_suite(tmp_path / "records")
    work = ["--work-dir", str(tmp_path)]
    assert main(["leaderboard", *work, "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "toyclass (accuracy)" in out and "[" in out and "chance" in out
    assert main(["layers", "good", *work]) == 0
    assert "*" in capsys.readouterr().out
    assert main(["compare", "good", "weak@0", *work, "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "P(A better)" in out and "1.000" in out
    assert main(["compare", "good", "weak@9", *work]) == 2
    assert "has no layer '9'" in capsys.readouterr().err
    assert main(["leaderboard", "--work-dir", str(tmp_path / "empty")]) == 2
    assert "no run records" in capsys.readouterr().err
    assert main(["publish", *work, "--out", str(tmp_path / "pub"), "--resamples", "200",
                 "--all-metrics"]) == 0
    assert (tmp_path / "pub" / "index.html").exists()
    assert "toyclass (macro_f1)" in (tmp_path / "pub" / "leaderboard.md").read_text()
