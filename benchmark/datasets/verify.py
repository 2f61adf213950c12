"""``mirprobe datasets verify``: check a MARBLE-format dataset before spending compute on it.

For every row: the JSON parses and has ``audio_path`` and ``label``; the audio file exists and
its header reads (no decoding unless ``decode``); the row's ``sample_rate``, ``channels`` and
``duration``/``num_samples`` match the header; the label encodes for the task (classes fitted
on the training split, as a run does). Across splits: no audio file or ``ori_uid`` in two
splits. Findings are *problems* (the run would skip or fail on the item: exit status 1) or
*warnings* (the run copes, e.g. 6 channels mixed down to mono, 8 kHz upsampled, a clip
shorter than one window). Each names the JSONL file and line.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mirprobe.admission import admit_labels, data_folder, task_options
from mirprobe.data import SPLITS, Item, read_jsonl
from mirprobe.datasets.common import HEADER_WORKERS, Header, read_headers
from mirprobe.errors import DataError, UserError

SPLIT_FILE = re.compile(r"^(?P<prefix>.+)\.(?P<split>train|val|test)\.jsonl$")
MIN_SECONDS = 0.1  # below this no model yields a feature frame: the run skips the item
LOW_RATE = 16000  # MERT's lowest native rate; lower rates lose bandwidth when upsampled


@dataclass(frozen=True)
class Finding:
    source: str
    line: int | None
    message: str

    def describe(self) -> str:
        return f"{self.source}:{self.line}: {self.message}" if self.line else f"{self.source}: {self.message}"


@dataclass
class SplitReport:
    split: str
    path: Path
    rows: int = 0
    usable: int = 0
    seconds: float = 0.0
    labels: str = ""


@dataclass
class VerifyReport:
    """What ``verify`` found in one dataset (one to three JSONL files)."""

    name: str
    plugin: str | None
    splits: list[SplitReport] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self, limit: int = 40) -> str:
        lines = [f"{self.name} (task kind: {self.plugin or 'unknown'})"]
        for s in self.splits:
            lines.append(f"  {s.split:<5} {s.rows} rows, {s.usable} usable, "
                         f"{s.seconds / 3600:.2f} h of audio — {s.path}")
            if s.labels:
                lines.append(f"        labels: {s.labels}")
        for title, found in (("warning", self.warnings), ("problem", self.problems)):
            if found:
                lines.append(f"  {len(found)} {title}(s):")
                lines += [f"    {f.describe()}" for f in found[:limit]]
                if len(found) > limit:
                    lines.append(f"    … and {len(found) - limit} more")
        lines.append("  OK: no problems" if self.ok else f"  {len(self.problems)} problem(s) found")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "plugin": self.plugin, "ok": self.ok,
                "splits": [{"split": s.split, "path": str(s.path), "rows": s.rows,
                            "usable": s.usable, "seconds": s.seconds, "labels": s.labels}
                           for s in self.splits],
                "problems": [f.describe() for f in self.problems],
                "warnings": [f.describe() for f in self.warnings]}


# ------------------------------------------------------------------ labels
def infer_plugin(labels: list[Any]) -> str | None:
    """The generic task kind that fits the labels' shape (None when there is no label)."""
    for label in labels:
        if isinstance(label, dict):
            return "beat"
        if isinstance(label, str):
            return "multiclass"
        if isinstance(label, list) and label:
            return "regression" if all(isinstance(v, int | float) for v in label) else "multilabel"
        if isinstance(label, int | float) and not isinstance(label, bool):
            return "regression"
    return "multilabel" if labels else None


def label_summary(plugin: str | None, labels: list[Any], top: int = 12) -> str:
    """One line: class counts, tag counts, value statistics or beat counts."""
    if not labels:
        return ""
    try:
        if plugin == "beat":
            beats = [len(label.get("beat") or []) for label in labels]
            return f"{np.mean(beats):.1f} beats per track on average"
        if plugin in ("regression", "emotion"):
            values = np.asarray(labels, dtype=float).reshape(len(labels), -1)
            stats = [f"{m:.3g} ± {s:.3g}" for m, s in zip(values.mean(0), values.std(0), strict=True)]
            return "mean ± std per dimension: " + ", ".join(stats)
        if plugin in ("multilabel", "tagging"):
            counts = Counter(t for label in labels for t in (label if isinstance(label, list) else [label]))
            empty = sum(1 for label in labels if not label)
            text = ", ".join(f"{k} {v}" for k, v in counts.most_common(top))
            more = f", … ({len(counts)} tags)" if len(counts) > top else ""
            return f"{text}{more}; {empty} without any tag"
        counts = Counter(str(label) for label in labels)
        more = f", … ({len(counts)} classes)" if len(counts) > top else ""
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:top]) + more
    except (TypeError, ValueError, AttributeError):
        return "labels of mixed shapes"


# ------------------------------------------------------------------ rows
def _raw_rows(path: Path) -> dict[int, dict[str, Any]]:
    """Line number → the row's JSON object (rows that do not parse are left out)."""
    rows = {}
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, start=1):
            try:
                row = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows[n] = row
    return rows


def _close(a: float, b: float) -> bool:
    """Durations agree within 0.1 s or 1% (MP3 headers count decoder padding differently)."""
    return abs(a - b) <= max(0.1, 0.01 * max(a, b))


def header_findings(row: dict[str, Any], head: Header, window_s: float) -> tuple[list[str], list[str]]:
    """(problems, warnings) for one row against its audio header."""
    if head.error:
        return [f"{head.error}; the run skips this item"], []
    problems, warnings = [], []
    rate = row.get("sample_rate")
    if isinstance(rate, int | float) and int(rate) != head.sample_rate:
        problems.append(f"sample_rate {rate} in the row but {head.sample_rate} Hz in the file; "
                        "re-run the preparer for these files")
    channels = row.get("channels")
    if isinstance(channels, int) and channels != head.channels:
        problems.append(f"channels {channels} in the row but {head.channels} in the file")
    stated = row.get("duration")
    if not isinstance(stated, int | float) and isinstance(row.get("num_samples"), int) \
            and isinstance(rate, int | float) and rate > 0:
        stated = row["num_samples"] / rate
    if isinstance(stated, int | float) and not _close(float(stated), head.duration):
        problems.append(f"duration {float(stated):.3f} s in the row but {head.duration:.3f} s in "
                        "the file; re-run the preparer for these files")
    if head.duration < MIN_SECONDS:
        problems.append(f"only {head.duration:.3f} s of audio: too short for a feature frame; "
                        "the run skips this item")
    elif head.duration < window_s:
        warnings.append(f"{head.duration:.2f} s is shorter than the {window_s:g} s window: "
                        "encoded as one shorter window")
    if head.channels > 2:
        warnings.append(f"{head.channels} channels: mixed down to mono by averaging")
    if head.sample_rate < LOW_RATE:
        warnings.append(f"{head.sample_rate} Hz: upsampled to the model's rate (no content "
                        f"above {head.sample_rate // 2} Hz)")
    return problems, warnings


def _decode_error(path: Path, sample_rate: int) -> str | None:
    from mirprobe.audio import load_audio

    try:
        load_audio(path, sample_rate)
    except DataError as e:
        return str(e).split(": ", 1)[-1]
    return None


# ------------------------------------------------------------------ datasets
def verify_files(files: dict[str, Path], *, name: str | None = None, audio_root: Path | None = None,
                 plugin: str | None = None, options: dict[str, Any] | None = None,
                 window_s: float = 5.0, decode: bool = False,
                 workers: int = HEADER_WORKERS) -> VerifyReport:
    """Verify the JSONL ``files`` (split → path) of one dataset; see the module docstring."""
    items: dict[str, list[Item]] = {}
    report = VerifyReport(name or next(iter(files.values())).name, plugin)
    rows: dict[Path, dict[int, dict[str, Any]]] = {}
    for split, path in files.items():
        if not Path(path).is_file():
            raise UserError(f"{path}: no such JSONL file")
        items[split], bad = read_jsonl(Path(path), split, audio_root)
        report.problems += [Finding(p.source, p.line, p.reason) for p in bad]
        rows[Path(path)] = _raw_rows(Path(path))
        report.splits.append(SplitReport(split, Path(path), rows=len(items[split]) + len(bad)))
    heads = read_headers((it.audio_path for s in items for it in items[s]), workers)
    bad_items = _check_audio(items, rows, heads, report, window_s, audio_root)
    if decode:
        bad_items |= _check_decode(items, heads, bad_items, report, workers)
    bad_items |= _check_labels(items, bad_items, report, plugin, options or {})
    _check_leaks(items, report)
    for s in report.splits:
        usable = [it for it in items[s.split] if (it.source, it.line) not in bad_items]
        s.usable = len(usable)
        s.seconds = sum(heads[it.audio_path].duration for it in usable)
        s.labels = label_summary(report.plugin, [it.label for it in usable])
        if not usable:
            report.problems.append(Finding(str(s.path), None, f"no usable {s.split} rows"))
    return report


def _check_audio(items: dict[str, list[Item]], rows: dict[Path, dict[int, dict]],
                 heads: dict[Path, Header], report: VerifyReport,
                 window_s: float, audio_root: Path | None = None) -> set[tuple[Path, int]]:
    bad = set()
    for split_items in items.values():
        for it in split_items:
            problems, warnings = header_findings(rows[it.source].get(it.line, {}),
                                                 heads[it.audio_path], window_s)
            where = (str(it.source), it.line)
            missing = it.missing(audio_root)
            if missing:  # the row's path as written and every place looked, not one guess
                report.problems.append(Finding(*where, f"{missing}; the run skips this item"))
                bad.add((it.source, it.line))
                continue
            report.problems += [Finding(*where, f"{it.audio_path}: {m}") for m in problems]
            report.warnings += [Finding(*where, f"{it.audio_path}: {m}") for m in warnings]
            if heads[it.audio_path].error or problems:
                bad.add((it.source, it.line))
    return bad


def _check_decode(items: dict[str, list[Item]], heads: dict[Path, Header],
                  bad: set[tuple[Path, int]], report: VerifyReport,
                  workers: int) -> set[tuple[Path, int]]:
    todo = {it.audio_path: heads[it.audio_path].sample_rate for s in items for it in items[s]
            if (it.source, it.line) not in bad}
    with ThreadPoolExecutor(max(1, min(workers, 4))) as pool:
        errors = dict(zip(todo, pool.map(_decode_error, todo, todo.values()), strict=True))
    found = set()
    for split_items in items.values():
        for it in split_items:
            if errors.get(it.audio_path):
                report.problems.append(Finding(str(it.source), it.line,
                                               f"{it.audio_path}: {errors[it.audio_path]}"))
                found.add((it.source, it.line))
    return found


def _check_labels(items: dict[str, list[Item]], bad: set[tuple[Path, int]], report: VerifyReport,
                  plugin: str | None, options: dict[str, Any]) -> set[tuple[Path, int]]:
    """The label rules of :mod:`mirprobe.admission`, on the items whose rows and audio passed,
    as a run applies them."""
    from mirprobe.plugins import get_task

    fit_on = items.get("train") or next(iter(items.values()))
    report.plugin = plugin or infer_plugin([it.label for it in fit_on])
    if report.plugin is None:
        return set()
    name = report.plugin
    usable = {s: [it for it in split_items if (it.source, it.line) not in bad]
              for s, split_items in items.items()}
    try:
        _, _, excluded = admit_labels(lambda: get_task(name, **options), usable)
    except UserError as e:
        report.problems.append(Finding(str(fit_on[0].source) if fit_on else report.name, None,
                                       str(e).split(": ", 1)[-1]))
        return set()
    found = set()
    for problems in excluded.values():
        for p in problems:
            report.problems.append(Finding(p.source, p.line, p.reason))
            found.add((Path(p.source), p.line))
    return found


def _check_leaks(items: dict[str, list[Item]], report: VerifyReport) -> None:
    """The same audio file or song (``ori_uid``) in two splits leaks test data into training."""
    seen: dict[str, str] = {}
    for split, split_items in items.items():
        for it in split_items:
            keys = [str(it.audio_path)] + ([f"ori_uid {it.uid}"] if it.uid != it.key else [])
            clash = [(k, seen.setdefault(k, split)) for k in keys]
            clash = [(k, other) for k, other in clash if other != split]
            if clash:
                key, other = clash[-1]
                report.problems.append(Finding(str(it.source), it.line,
                                               f"{key} is also in the {other} split"))


def dataset_files(target: Path) -> dict[str, Path]:
    """The split files meant by a JSONL path: its three siblings when they all exist."""
    match = SPLIT_FILE.match(target.name)
    if match:
        trio = {s: target.with_name(f"{match['prefix']}.{s}.jsonl") for s in SPLITS}
        if all(p.is_file() for p in trio.values()):
            return trio
        return {match["split"]: target}
    return {"train": target}


def resolve_target(target: str, data_root: Path | None = None) -> list[tuple[str, dict[str, Path], dict[str, Any]]]:
    """(name, split files, task options) for a JSONL path, a prefix path, a folder, a dataset
    name (``gtzan``) or a task config name (``gtzan-genre``)."""
    path = Path(target).expanduser()
    if path.is_file():
        return [(path.name, dataset_files(path), _known_task(path))]
    if path.is_dir():
        prefixes = sorted({m["prefix"] for p in path.glob("*.jsonl") if (m := SPLIT_FILE.match(p.name))})
        if not prefixes:
            raise UserError(f"{path}: no <Prefix>.{{train,val,test}}.jsonl files in this folder")
        return [(p, dataset_files(path / f"{p}.train.jsonl"), _known_task(path / f"{p}.train.jsonl"))
                for p in prefixes]
    if Path(f"{path}.train.jsonl").is_file():
        first = Path(f"{path}.train.jsonl")
        return [(path.name, dataset_files(first), _known_task(first))]
    return [_from_task_config(target, data_root)]


def _known_task(path: Path) -> dict[str, Any]:
    """The task config of a MARBLE dataset recognised by its JSONL prefix (``GTZANGenre``), so
    that labels are checked against its fixed classes; nothing for other files."""
    from mirprobe.datasets import DATASETS

    match = SPLIT_FILE.match(path.name)
    spec = next((s for s in DATASETS.values() if match and s.prefix == match["prefix"]), None)
    return _task_config(spec.task)[2] if spec else {}


def _task_config(name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(config name, its keys, what ``verify`` needs of it) for a dataset or task config name."""
    from mirprobe.config import available, named_section
    from mirprobe.datasets import ALIASES, DATASETS

    config = DATASETS[ALIASES.get(name, name)].task if ALIASES.get(name, name) in DATASETS else name
    if config not in available("tasks"):
        raise UserError(f"{name!r} is not a JSONL file, a folder, a dataset name "
                        f"({', '.join(DATASETS)}) or a task config ({', '.join(available('tasks'))})")
    _, opts = named_section(config, "tasks")
    return config, dict(opts), {"plugin": opts.get("plugin"), "options": task_options(opts),
                                "audio_root": opts.get("audio_root")}


def _from_task_config(name: str, data_root: Path | None) -> tuple[str, dict[str, Path], dict[str, Any]]:
    config, opts, extra = _task_config(name)
    if opts.get("data") == "synthetic":
        raise UserError(f"task {config!r} reads the built-in synthetic suite; write it with "
                        "`mirprobe synth --out DIR` and verify that folder")
    folder = data_folder(config, str(opts["data"]), data_root)
    files = {s: folder / f"{opts['jsonl']}.{s}.jsonl" for s in SPLITS}
    return f"{config} ({folder})", files, extra


def verify(target: str, *, data_root: Path | None = None, audio_root: Path | None = None,
           plugin: str | None = None, window_s: float = 5.0, decode: bool = False) -> list[VerifyReport]:
    """Verify every dataset that ``target`` names (see :func:`resolve_target`)."""
    reports = []
    for name, files, extra in resolve_target(target, data_root):
        root = audio_root or (Path(str(extra["audio_root"])) if extra.get("audio_root") else None)
        reports.append(verify_files(files, name=name, audio_root=root,
                                    plugin=plugin or extra.get("plugin"),
                                    options=extra.get("options") if not plugin else {},
                                    window_s=window_s, decode=decode))
    return reports
