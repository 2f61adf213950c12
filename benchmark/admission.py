"""Which items a run uses: the one set of rules for ``mirprobe run`` and ``mirprobe datasets
verify``, so that the check and the run cannot disagree.

In order:

1. **Folder** — a task's ``data`` folder is absolute, or relative to ``data_root``; a relative
   folder without ``data_root`` is an error (never resolved against the current directory).
2. **Row** — a line that is not a JSON object with ``audio_path`` and ``label`` is excluded
   (:func:`mirprobe.data.read_jsonl`).
3. **Audio** — an item whose audio cannot be used is excluded with the reason (the run learns it
   by decoding during extraction, ``verify`` from the file header, or by decoding with ``--decode``).
4. **Label space** — the task is fitted on the training labels of the items left; when that
   fails, each training label that cannot be fitted alone is excluded and the task is fitted on
   the rest.
5. **Label** — an item of any split whose label the fitted task cannot encode is excluded.

Every exclusion is a :class:`mirprobe.data.Problem` naming the JSONL file and line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirprobe.data import SPLITS, Item, Problem
from mirprobe.errors import UserError

#: Task-config keys that say where the data is; every other key is a plugin option.
TASK_KEYS = ("plugin", "data", "jsonl", "audio_root")
#: What happens to an item a rule rejects (the end of each exclusion's reason).
SKIPPED = "item skipped"


def task_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The plugin options of a task config (every key but :data:`TASK_KEYS`)."""
    return {k: v for k, v in opts.items() if k not in TASK_KEYS}


def data_folder(task: str, data: str, data_root: str | Path | None) -> Path:
    """Rule 1: the task's ``data`` folder, absolute or under ``data_root``."""
    folder = Path(str(data)).expanduser()
    if folder.is_absolute():
        return folder
    if not data_root:
        raise UserError(f"task {task!r}: data folder {data!r} is relative; set "
                        f"data_root=/path/to/datasets (--data-root for verify) or give an "
                        f"absolute path")
    return Path(str(data_root)).expanduser() / folder


def split_of(problem: Problem) -> str:
    """The split of a row problem, from its JSONL file name (``…​.val.jsonl``)."""
    return next((s for s in SPLITS if problem.source.endswith(f".{s}.jsonl")), "train")


def excluded(item: Item, reason: str) -> Problem:
    return Problem(str(item.source), item.line, reason, item.key)


def label_problem(task: Any, label: Any) -> str | None:
    """Rule 5: why ``task`` cannot turn ``label`` into a target (None when it can)."""
    try:
        if task.view == "clip":
            task.encode(label)
        else:
            task.encode_frames(label, 1, 1.0)
    except ValueError as e:
        return f"{e}; {SKIPPED}"
    return None


def fit_task(make: Callable[[], Any], train: list[Item]) -> tuple[Any, list[Item], list[Problem]]:
    """Rule 4: ``(fitted task, training items kept, training items excluded)``."""
    task = make()
    try:
        task.fit([it.label for it in train])
        return task, train, []
    except ValueError:
        pass
    keep, dropped = [], []
    for it in train:
        try:
            make().fit([it.label])
            keep.append(it)
        except ValueError as e:
            dropped.append(excluded(it, f"{e}; {SKIPPED}"))
    task = make()
    try:
        task.fit([it.label for it in keep])
    except ValueError as e:
        where = str(train[0].source) if train else "the training split"
        raise UserError(f"{where}: cannot learn the label space of task {task.name!r} from the "
                        f"training labels ({e}); fix the labels or give the task's classes") from None
    return task, keep, dropped


def admit_labels(make: Callable[[], Any], splits: Mapping[str, list[Item]]
                 ) -> tuple[Any, dict[str, list[Item]], dict[str, list[Problem]]]:
    """Rules 4 and 5 on items whose rows and audio passed: ``(fitted task, items kept per
    split, items excluded per split)``. The label space is learnt from ``train`` (from the
    first split given when there is no ``train``)."""
    first = "train" if "train" in splits else next(iter(splits))
    task, kept_train, dropped = fit_task(make, list(splits[first]))
    kept: dict[str, list[Item]] = {}
    out: dict[str, list[Problem]] = {s: [] for s in splits}
    out[first] += dropped
    for split, items in splits.items():
        kept[split] = []
        for it in (kept_train if split == first else items):
            reason = label_problem(task, it.label)
            if reason is None:
                kept[split].append(it)
            else:
                out[split].append(excluded(it, reason))
    return task, kept, out


@dataclass
class Admission:
    """What a run uses: the fitted task, the items kept and every item excluded, per split."""

    task: Any
    usable: dict[str, list[Item]]
    excluded: dict[str, list[Problem]]


def admit(make: Callable[[], Any], splits: Mapping[str, list[Item]], rows: list[Problem],
          audio: Callable[[Item], str | None]) -> Admission:
    """Rules 2–5: ``rows`` are the row problems of the JSONL files, ``audio(item)`` the reason
    an item's audio cannot be used (None when it can)."""
    out: dict[str, list[Problem]] = {s: [] for s in splits}
    for p in rows:
        out.setdefault(split_of(p), []).append(p)
    usable: dict[str, list[Item]] = {}
    for split, items in splits.items():
        usable[split] = []
        for it in items:
            reason = audio(it)
            if reason is None:
                usable[split].append(it)
            else:
                out[split].append(excluded(it, reason))
    task, kept, labels = admit_labels(make, usable)
    for split in splits:
        out[split] += labels[split]
    return Admission(task, kept, out)
