"""Config loading and validation: errors name the key and the allowed values."""

from __future__ import annotations

import re

import pytest
import torch

from mirprobe.cli import main
from mirprobe.config import load_run_config, named_section
from mirprobe.errors import UserError
from mirprobe.extraction import batch_windows


def test_quickstart_loads_with_overrides() -> None:
    cfg = load_run_config("quickstart", ["tasks=[key,genre]", "probe.lr=[0.001]"])
    assert list(cfg.tasks) == ["key", "genre"]
    assert list(cfg.probe.lr) == [0.001]
    assert cfg.probe.hidden == 128  # from quickstart.yaml, over the schema default 512


@pytest.mark.parametrize(("overrides", "fragment"), [
    (["probe.lrr=[1]"], "unknown config key 'probe.lrr' (did you mean 'lr'?)"),
    (["devise=cpu"], "unknown config key 'devise' (did you mean 'device'?)"),
    (["device=gpu"], "'device': 'gpu' is not allowed; use one of: auto, cpu, cuda, mps"),
    (["probe.heads=[mlp,svm]"], "'probe.heads': 'svm' is not allowed; use one of: linear, mlp, ridge"),
    (["probe.heads=[ridge,mlp]"], "'probe.heads': ridge heads run alone"),
    (["probe.alpha=[1,-2]"], "'probe.alpha': [1.0, -2.0]; give positive penalties"),
    (["probe.alpha=[]"], "'probe.alpha': []; give positive penalties"),
    (["probe.dtype=float16"], "'probe.dtype': 'float16' is not allowed; use one of: float32, bfloat16"),
    (["probe.max_epochs=0"], "'probe.max_epochs' must be at least 1"),
    (["synthetic.size=huge"], "'synthetic.size': 'huge' is not allowed"),
    (["probe.batch_size=abc"], "probe.batch_size"),
    (["extract.batch_size=0"], "'extract.batch_size' must be 'auto' or a whole number of at least 1"),
    (["extract.batch_size=big"], "'extract.batch_size' must be 'auto' or a whole number"),
])
def test_bad_values_name_the_key(overrides: list[str], fragment: str) -> None:
    with pytest.raises(UserError) as err:
        load_run_config("quickstart", overrides)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_fast_config_runs_ridge_heads() -> None:
    cfg = load_run_config("fast", ["probe.alpha=[0.1,1]"])
    assert list(cfg.probe.heads) == ["ridge"]
    assert list(cfg.probe.alpha) == [0.1, 1]
    assert load_run_config("fast").probe.dtype == "float32"


def test_unknown_run_config_lists_choices() -> None:
    with pytest.raises(UserError, match="no run config 'quickstrat' \\(did you mean 'quickstart'\\?\\)"):
        load_run_config("quickstrat", [])


def test_unknown_task_and_model_names() -> None:
    with pytest.raises(UserError, match="no task config 'keyy'.*did you mean 'key'"):
        named_section("keyy", "tasks")
    with pytest.raises(UserError, match="inline entry of 'models' needs a 'name'"):
        named_section({"kind": "random"}, "models")


def test_cli_prints_one_line_error_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "quickstart", "tasks=[key,nosuchtask]", "progress=false"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mirprobe: error: no task config 'nosuchtask'")
    assert "Traceback" not in err and err.count("\n") == 1


def test_missing_dataset_folder_is_one_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    task = tmp_path / "mytask.yaml"
    task.write_text("plugin: genre\ndata: nowhere\njsonl: Genre\n")
    code = main(["run", "quickstart", f"tasks=[{{name: mine, base: genre, data: {tmp_path}/nowhere}}]",
                 "models=[handcrafted]", "progress=false"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"dataset folder {tmp_path}/nowhere does not exist" in err
    assert err.count("\n") == 1


def test_auto_extract_batch_depends_on_the_device() -> None:
    assert load_run_config("quickstart", []).extract.batch_size == "auto"
    assert batch_windows("auto", torch.device("cpu")) == 2
    assert batch_windows("auto", torch.device("cuda")) == 16
    assert batch_windows(5, torch.device("cpu")) == 5


@pytest.mark.parametrize(("entry", "fragment"), [
    ("{name: k2, base: key, windw_s: 10}", "task plugin 'key': unknown option\\(s\\) windw_s"),
    ("{name: t2, base: tagging, window_s: -3}", "task plugin 'tagging': window_s must be a positive"),
    ("{name: b2, base: beat, clip_s: 0}", "task plugin 'beat': beat options"),
])
def test_bad_task_options_are_one_line_errors(tmp_path, monkeypatch, capsys, entry: str,
                                               fragment: str) -> None:
    monkeypatch.setenv("MIRPROBE_HOME", str(tmp_path))
    code = main(["run", "quickstart", f"tasks=[{entry}]", "models=[handcrafted]", "progress=false",
                 "synthetic.size=tiny"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(fragment, err), err
