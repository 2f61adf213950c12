"""The run record: JSON round trip, schema check, the store's handling of other schemas, and
provenance without local paths."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from mirprobe.config import load_run_config
from mirprobe.data import Problem
from mirprobe.pipeline import run
from mirprobe.record import (
    SCHEMA,
    DatasetRef,
    LayerResult,
    Record,
    RecordFormatError,
    SeedResult,
    Selection,
    TaskRef,
)
from mirprobe.results import RecordStore

TINY = ["synthetic.size=tiny", "progress=false", "models=[random]", "tasks=[genre]",
        "probe.heads=[linear]", "probe.lr=[1e-2]", "probe.max_epochs=2", "probe.hidden=8"]


def sample(rid: str = "abc123") -> Record:
    layers = [LayerResult(layer="layer0", index=0, chosen={"lr": 1e-3},
                          val={"accuracy": np.float64(0.5)}, test={"accuracy": 0.25},
                          seeds=[SeedResult(seed=0, val={"accuracy": 0.5}, test={"accuracy": 0.25},
                                            epochs=3)])]
    return Record(
        id=rid, model="random",
        task=TaskRef("genre", plugin="genre", options={"window_s": None},
                     state={"classes": ["a", "b"]},
                     declarations={"accuracy": {"higher_is_better": True, "scale": 100.0,
                                                "resample": "mean"}}),
        dataset=DatasetRef(task="genre", folder="GTZAN", jsonl="GTZAN", digest="0123456789abcdef"),
        feature_entry="e1", config={"seed": 0, "probe": {"lr": [1e-3]}},
        versions={"mirprobe": "0.1.0"},
        selection=Selection(layer="layer0", metric="accuracy", higher_is_better=True),
        per_layer=layers, chance={"accuracy": 0.1}, counts={"train": 8, "val": 2, "test": 4},
        test_units=4,
        excluded={"train": [], "val": [], "test": [Problem("GTZAN.test.jsonl", 3, "unreadable",
                                                           "x.wav")]},
        predictions=f"{rid}.npz", num_heads=6, timings={"probe_s": 1.5}, created="2026-01-01T00:00:00")


def test_json_round_trip_is_exact() -> None:
    rec = sample()
    text = rec.to_json()
    data = json.loads(text)  # what the file holds, read by the standard library
    assert data["schema"] == SCHEMA and list(data)[0] == "schema"
    assert data["dataset"] == {"task": "genre", "folder": "GTZAN", "jsonl": "GTZAN",
                               "digest": "0123456789abcdef"}
    assert data["per_layer"][0]["val"]["accuracy"] == 0.5  # numpy scalars become plain numbers
    back = Record.from_json(text)
    assert back == rec
    assert back.to_json() == text
    assert back.task.state == {"classes": ["a", "b"]} and back.best.seeds[0].epochs == 3
    assert back.excluded["test"][0].audio_path == "x.wav"
    assert {f.name for f in dataclasses.fields(Record)} | {"schema"} == set(data)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("schema"), "schema None"),
    (lambda d: d.update(schema=1), "schema 1"),
    (lambda d: d.update(schema=SCHEMA + 1), f"schema {SCHEMA + 1}"),
    (lambda d: d.pop("selection"), "missing \\['selection'\\]"),
    (lambda d: d.update(best={}), "unknown \\['best'\\]"),
    (lambda d: d["per_layer"][0].pop("seeds"), "damaged 'per_layer'"),
    (lambda d: d.update(extra=1), "unknown \\['extra'\\]"),
    (lambda d: d.update(dataset="/home/me/GTZAN/GTZAN"), "damaged 'dataset'"),
])
def test_other_schemas_and_damaged_records_are_rejected(change, message) -> None:
    data = sample().to_dict()
    change(data)
    with pytest.raises(RecordFormatError, match=message):
        Record.from_dict(data, "r.json")


def test_store_treats_other_schemas_as_absent(tmp_path: Path, capsys) -> None:
    store = RecordStore(tmp_path)
    old = sample("old").to_dict() | {"schema": 1}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert store.get("old") is None
    assert store.all() == []
    assert "skipped 1 run record(s)" in capsys.readouterr().err
    store.put(sample("old"))  # a run writes the record anew over the unreadable one
    assert store.get("old") == sample("old")
    stamp = (tmp_path / "old.json").stat().st_mtime_ns
    store.put(dataclasses.replace(sample("old"), model="other"))  # readable: never overwritten
    assert (tmp_path / "old.json").stat().st_mtime_ns == stamp
    assert store.get("old").model == "random"


def test_run_records_name_the_dataset_without_local_paths(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (rec,) = run(load_run_config("quickstart", [*TINY, f"work_dir={work}"]))
    assert isinstance(rec, Record)
    text = (work / "records" / f"{rec.id}.json").read_text()
    assert str(tmp_path) not in json.loads(text)["dataset"].values()
    assert rec.dataset.task == "genre" and rec.dataset.folder == "tiny-seed0"
    assert rec.dataset.jsonl == "Genre" and rec.dataset.digest == rec.config["dataset"]
    assert str(work) not in json.dumps(rec.config)
    assert RecordStore(work / "records").get(rec.id) == rec
