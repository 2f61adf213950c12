"""The run record: JSON round trip, schema check, the store's handling of other schemas, and
provenance without local paths."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from test_report_fixtures import ShiftedTask, class_data, make_record, toy_tasks  # noqa: F401 - fixture

from mirprobe.config import load_run_config
from mirprobe.data import Problem
from mirprobe.pipeline import run
from mirprobe.record import (
    SCHEMA,
    DatasetRef,
    Declaration,
    LayerResult,
    Record,
    RecordFormatError,
    SeedResult,
    Selection,
    TaskRef,
)
from mirprobe.report.compare import compare
from mirprobe.report.stats import bootstrap_metric, record_interval
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
                     declarations={"accuracy": Declaration(higher_is_better=True, scale=100.0,
                                                           resample="mean")}),
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
    err = capsys.readouterr().err
    assert "skipped 1 run record(s)" in err and "schema 1" in err
    assert err.count("\n") == 1, "one line says so"
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


def test_a_schema_2_record_is_ignored_with_one_line(tmp_path: Path, capsys) -> None:
    old = sample("two").to_dict() | {"schema": 2, "task": "genre", "task_info": {"name": "genre"}}
    (tmp_path / "two.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(sample("new").to_json())
    assert [r.id for r in RecordStore(tmp_path).all()] == ["new"]
    assert RecordStore(tmp_path).get("two") is None
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "schema 2" in lines[0] and "two.json" in lines[0], lines


def test_an_option_describe_leaves_out_still_rebuilds_the_task(tmp_path: Path, toy_tasks) -> None:  # noqa: F811
    """Intervals and comparisons use the task as constructed, whatever describe() lists."""
    rng = np.random.default_rng(0)
    classes = [f"c{i}" for i in range(4)]
    logits, labels = class_data(rng, 60, 4, 0.7)
    weak, _ = class_data(np.random.default_rng(1), 60, 4, 0.3)
    uids = [f"s{i // 2}" for i in range(60)]
    store = RecordStore(tmp_path)
    records = {}
    for plugin in ("shifted", "shifted_listed"):
        task = toy_tasks[plugin](classes=classes, shift=1)
        assert "shift" in task.describe() if plugin == "shifted_listed" else "shift" not in task.describe()
        for model, pred in ((f"a-{plugin}", {0: logits}), (f"b-{plugin}", {0: weak})):
            records[model] = make_record(store, model, task, pred, labels, uids, plugin=plugin,
                                         rid=model)
    rebuilt = records["a-shifted"].task.build()
    assert isinstance(rebuilt, ShiftedTask) and rebuilt.shift == 1 and rebuilt.classes == classes

    # Reference: the task constructed directly with the option, and without it.
    want = bootstrap_metric(ShiftedTask(classes=classes, shift=1), [logits], labels, uids,
                            "accuracy")
    unshifted = bootstrap_metric(ShiftedTask(classes=classes), [logits], labels, uids, "accuracy")
    assert (want.low, want.high) != (unshifted.low, unshifted.high), "the option matters"
    for plugin in ("shifted", "shifted_listed"):
        got = record_interval(records[f"a-{plugin}"], None, records_dir=tmp_path)
        assert got == (want.low, want.high), plugin
    tables = [compare(list(records.values()), f"a-{p}", f"b-{p}", records_dir=tmp_path)
              for p in ("shifted", "shifted_listed")]
    assert tables[0].reset_index(drop=True).equals(tables[1].reset_index(drop=True))
    assert tables[0]["a"].iloc[0] == pytest.approx(want.value)
