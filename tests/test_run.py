"""End to end on the tiny synthetic suite: every cell filled, same seed same tables, reuse, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from mirprobe.config import load_run_config
from mirprobe.features import FeatureStore, entry_id, entry_identity
from mirprobe.locks import try_hold
from mirprobe.models.random import SmallRandomExtractor
from mirprobe.pipeline import run
from mirprobe.synth import generate_suite

# The weightless models only (musicnn-mtt, the third default model, has its own run test).
TINY = ["synthetic.size=tiny", "tasks=[key,genre,tagging,emotion,beat]", "progress=false", "models=[handcrafted,random]", "probe.heads=[linear,mlp]", "probe.hidden=32",
        "probe.lr=[1e-3,1e-2]", "probe.max_epochs=4", "probe.patience=2"]
ROOT = Path(__file__).resolve().parent.parent


def _run(work: Path, *extra: str) -> list[dict]:
    return run(load_run_config("quickstart", [*TINY, f"work_dir={work}", *extra]))


def test_quickstart_tiny_end_to_end_reuse_and_determinism(tmp_path: Path) -> None:
    first = _run(tmp_path / "a")
    assert sorted((r.model, r.task) for r in first) == sorted(
        (m, t) for m in ("handcrafted", "random") for t in ("key", "genre", "tagging", "emotion", "beat"))
    board = pd.read_csv(tmp_path / "a" / "runs" / "quickstart" / "leaderboard.csv")
    assert not board.isna().any().any(), "every leaderboard cell is filled"
    for name in ("leaderboard.md", "layers.md", "layers.csv"):
        assert (tmp_path / "a" / "runs" / "quickstart" / name).stat().st_size > 0
    for rec in first:
        assert rec.counts["test"] > 0 and rec.best.layer in rec.layers
        assert set(rec.best.test) >= {rec.selection_metric}

    records = sorted((tmp_path / "a" / "records").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in records}
    started = time.perf_counter()
    again = _run(tmp_path / "a")
    assert time.perf_counter() - started < 30
    assert [r.id for r in again] == [r.id for r in first]
    assert {p: p.stat().st_mtime_ns for p in records} == stamps, "records are reused, not rewritten"

    _run(tmp_path / "b")  # a fresh work folder, same seed
    for name in ("leaderboard.csv", "layers.csv"):
        assert (tmp_path / "a" / "runs" / "quickstart" / name).read_bytes() == \
            (tmp_path / "b" / "runs" / "quickstart" / name).read_bytes()


def test_changed_probe_config_is_a_new_record(tmp_path: Path) -> None:
    one = _run(tmp_path, "models=[handcrafted]", "tasks=[genre]")
    two = _run(tmp_path, "models=[handcrafted]", "tasks=[genre]", "probe.lr=[1e-2]")
    assert one[0].id != two[0].id
    assert one[0].feature_entry == two[0].feature_entry, "features are shared"
    assert len(list((tmp_path / "records").glob("*.json"))) == 2


def test_new_probe_engine_is_a_new_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record trained by an earlier engine (one that computed differently) is not reused."""
    import mirprobe.jobs

    one = _run(tmp_path, "models=[handcrafted]", "tasks=[genre]")
    monkeypatch.setattr(mirprobe.jobs, "ENGINE_VERSION", mirprobe.jobs.ENGINE_VERSION + 1)
    two = _run(tmp_path, "models=[handcrafted]", "tasks=[genre]")
    assert one[0].id != two[0].id and two[0].config["engine"] == one[0].config["engine"] + 1
    assert len(list((tmp_path / "records").glob("*.json"))) == 2


def test_killed_extraction_resumes_without_recomputing(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRPROBE_LOCK_TIMEOUT", "60")  # a lock left held fails, never hangs
    suite = generate_suite(tmp_path / "suite", size="tiny", seed=0, progress=False)
    keys = sorted(str(p) for p in (suite / "audio").glob("*.wav")) * 3  # enough chunks to kill mid-way
    store = FeatureStore(tmp_path / "features")
    script = (
        "import sys; from pathlib import Path; from mirprobe.features import FeatureStore;"
        "from mirprobe.models.random import SmallRandomExtractor;"
        f"FeatureStore(Path({str(store.root)!r})).extract(SmallRandomExtractor(), {keys!r}, "
        "batch_size=1, chunk_items=4, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    eid = entry_id(entry_identity(SmallRandomExtractor(), keys, "clip", 5.0))
    partial = store.partial_path(eid)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(partial.glob("chunk*.npz"))) < 2:
        assert proc.poll() is None, "extraction finished before it could be killed; use more items"
        time.sleep(0.05)
    with try_hold(store.final_path(eid)) as free:
        assert not free, "the extracting process holds the entry's lock"
    proc.send_signal(signal.SIGKILL)  # killed holding the lock: the next process must not wait
    proc.wait()
    finished = len(list(partial.glob("chunk*.npz")))
    assert 2 <= finished < len(keys) / 4 and store.get(eid) is None

    class Counting(SmallRandomExtractor):
        seen = 0

        def forward(self, waves: torch.Tensor) -> torch.Tensor:
            Counting.seen += len(waves)
            return super().forward(waves)

    entry = store.extract(Counting(), keys, batch_size=1, chunk_items=4, progress=False)
    assert entry is not None and len(entry.items) == len(keys) and not entry.failed
    assert Counting.seen == entry.features.shape[0] - int(entry.offsets[4 * finished]), \
        "only the unfinished chunks were extracted again"
    assert not partial.exists(), "the resumed .partial folder became the entry"


@pytest.mark.parametrize("override", ["models=[nosuch]", "tasks=[nosuch]"])
def test_unknown_names_fail_before_any_work(tmp_path: Path, override: str) -> None:
    from mirprobe.errors import UserError

    with pytest.raises(UserError, match="nosuch"):
        _run(tmp_path, override)
    assert not (tmp_path / "features").exists()


def test_bad_labels_are_excluded_with_file_and_line(tmp_path: Path) -> None:
    from tests.conftest import write_jsonl, write_tone

    keys = ["C major", "A minor", "G major", "E minor"]
    for split, n in (("train", 12), ("val", 4), ("test", 4)):
        rows = [{"audio_path": str(write_tone(tmp_path / "a" / f"{split}{i}.wav", 1.0, freq=220 + 30 * i)),
                 "label": keys[i % 4]} for i in range(n)]
        if split in ("train", "test"):
            rows.append({"audio_path": rows[0]["audio_path"], "label": "H major"})
        write_jsonl(tmp_path / f"K.{split}.jsonl", rows)
    task = f"{{name: k, plugin: key, data: {tmp_path}, jsonl: K}}"
    [rec] = _run(tmp_path / "w", "models=[handcrafted]", f"tasks=[{task}]")
    bad = {split: [(p.line, p.reason) for p in rec.excluded[split]] for split in ("train", "test")}
    assert [line for line, _ in bad["train"]] == [13] and [line for line, _ in bad["test"]] == [5]
    assert all("H major" in reason for split in bad for _, reason in bad[split])
    assert rec.counts == {"train": 12, "val": 4, "test": 4}
    board = (tmp_path / "w" / "runs" / "quickstart" / "leaderboard.md").read_text()
    assert "Excluded from scoring: handcrafted × k: 1 test item(s) excluded (key label 'H major'" in board
