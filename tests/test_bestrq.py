"""MuQ and MusicFM: every layer equals the original implementation's (fixtures made once with the
authors' code, see tests/fixtures/{muq,musicfm}/README.md); the mel front end equals librosa's;
damaged checkpoints are one-line errors; extraction, ``embed()``, ranks and ``run fast`` work."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mirprobe.errors import UserError
from mirprobe.models import detect_kind, load_model
from mirprobe.models.bestrq import load_muq, load_musicfm, random_bestrq
from mirprobe.models.melspec import MelSpectrogram, htk_mel_filterbank, power_to_db
from tests.conftest import write_tone
from tests.fixtures_models import assert_ranks_equal_one_process

FIXTURES = Path(__file__).parent / "fixtures"
MUQ = FIXTURES / "muq" / "checkpoint"
MUSICFM = FIXTURES / "musicfm" / "pretrained_msd.pt"


def reference(kind: str) -> tuple[torch.Tensor, np.ndarray]:
    with np.load(FIXTURES / kind / "reference.npz") as z:
        return torch.from_numpy(z["pcm"].astype(np.float32) / 32768), z["hidden_states"]


def load(kind: str, **options: object):
    return load_model(kind, kind=kind, checkpoint=str(MUQ if kind == "muq" else MUSICFM), **options)


@pytest.mark.parametrize("kind", ["muq", "musicfm"])
def test_every_layer_matches_the_original(kind: str) -> None:
    waves, ref = reference(kind)
    ex = load(kind)
    out = ex.forward(waves).numpy()
    assert out.shape == ref.shape == (4, 2, 100, 64)
    assert (ex.sample_rate, ex.frame_rate, ex.num_layers, ex.dim) == (24000, 25.0, 4, 64)
    assert ex.num_frames(waves.shape[1]) == 100
    for layer in range(len(ref)):
        rel = np.abs(out[layer] - ref[layer]).max() / np.abs(ref[layer]).max()
        assert rel < 1e-4, f"{kind} layer {layer}: relative deviation {rel:.2e}"
    assert np.abs(ref[1] - ref[2]).max() > 0.1  # the layers differ: the comparison can fail


def test_mel_matches_librosa_and_the_stored_filter_bank() -> None:
    """torchaudio's mel, in dB with no floor, against librosa (HTK, no norm, centred, reflect);
    the filter bank against the one torchaudio stored in MusicFM's checkpoint."""
    wave = reference("musicfm")[0][0, :24000].numpy()
    mel = MelSpectrogram(24000, 2048, 240, 128)
    ours = power_to_db(mel(torch.from_numpy(wave)[None]))[0].numpy()
    power = librosa.feature.melspectrogram(y=wave.astype(np.float64), sr=24000, n_fft=2048,
                                           hop_length=240, n_mels=128, htk=True, norm=None,
                                           pad_mode="reflect")
    want = 10 * np.log10(np.maximum(power, 1e-10))
    assert ours.shape == want.shape == (128, 101)
    loud = want > want.max() - 60  # float32 rounding shows only in the quietest bins
    assert np.abs(ours - want)[loud].max() < 2e-3 and np.abs(ours - want).max() < 0.05  # dB
    state = torch.load(MUSICFM, weights_only=True)["state_dict"]
    stored = state["model.preprocessor_melspec_2048.mel_stft.mel_scale.fb"].numpy().T
    np.testing.assert_allclose(htk_mel_filterbank(24000, 2048, 128), stored, atol=2e-5)  # float32
    floored = power_to_db(torch.tensor([[[1.0, 1e-20]], [[1e-8, 1e-9]]]), top_db=50)
    np.testing.assert_allclose(floored.numpy(), [[[0.0, -50.0]], [[-80.0, -90.0]]], atol=1e-4)


def test_published_sizes() -> None:
    for arch in ("muq-large", "musicfm-25hz"):
        ex = random_bestrq(arch)
        assert (ex.num_layers, ex.dim, ex.frame_rate, ex.sample_rate) == (13, 1024, 25.0, 24000)
        assert 300e6 < ex.num_parameters < 340e6  # ~310 M without the pre-training head
    with pytest.raises(UserError, match="muq-large"):
        random_bestrq("nope")


def _muq_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "muq"
    shutil.copytree(MUQ, folder)
    return folder


def test_muq_missing_and_mismatched_tensors_name_tensor_and_file(tmp_path: Path) -> None:
    folder = _muq_copy(tmp_path)
    weights = folder / "model.safetensors"
    state = load_file(weights)
    del state["model.conformer.layers.1.conv_module.depthwise_conv.weight"]
    save_file(state, weights)
    with pytest.raises(UserError) as err:
        load_muq("m", checkpoint=str(folder))
    msg = str(err.value)
    assert "conformer.layers.1.conv_module.depthwise_conv.weight" in msg and str(weights) in msg
    assert "\n" not in msg
    state = load_file(MUQ / "model.safetensors")
    state["model.conv.linear.bias"] = torch.zeros(65)
    save_file(state, weights)
    with pytest.raises(UserError, match=r"wrong shape.*conv\.linear\.bias"):
        load_muq("m", checkpoint=str(folder))
    state = load_file(MUQ / "model.safetensors")
    state["model.conformer.layers.0.extra.weight"] = torch.zeros(3)
    save_file(state, weights)
    with pytest.raises(UserError, match=r"unexpected weights.*layers\.0\.extra\.weight"):
        load_muq("m", checkpoint=str(folder))


def test_muq_config_problems(tmp_path: Path) -> None:
    folder = _muq_copy(tmp_path)
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**raw, "is_flash": True}))
    with pytest.raises(UserError, match="is_flash"):
        load_muq("m", checkpoint=str(folder))
    del raw["stat"]
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match=r"config\.json: not a MuQ config.*stat"):
        load_muq("m", checkpoint=str(folder))
    with pytest.raises(UserError, match="large-msd, large-msd-iter"):
        load_muq("m", variant="huge")
    with pytest.raises(UserError, match="dim 1024"):
        load_muq("m", checkpoint=str(MUQ), dim=1024)


def test_musicfm_damaged_files(tmp_path: Path) -> None:
    folder = tmp_path / "fm"
    shutil.copytree(MUSICFM.parent, folder)
    weights = folder / "pretrained_msd.pt"
    state = torch.load(weights, weights_only=True)
    state["state_dict"]["model.conformer.layers.2.ffn2.output_dense.bias"] = torch.zeros(7)
    torch.save(state, weights)
    with pytest.raises(UserError, match=rf"{weights}.*ffn2\.output_dense\.bias"):
        load_musicfm("f", checkpoint=str(weights))
    weights.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"pretrained_msd\.pt: cannot read"):
        load_musicfm("f", checkpoint=str(folder))
    (folder / "msd_stats.json").unlink()
    with pytest.raises(UserError, match="msd_stats.json"):
        load_musicfm("f", checkpoint=str(folder))
    with pytest.raises(UserError, match="msd, fma"):
        load_musicfm("f", variant="mtg", checkpoint=str(folder))
    with pytest.raises(UserError, match="pretrained_fma.pt"):
        load_musicfm("f", variant="fma", checkpoint=str(folder))


def test_offline_hub_cache_and_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    snap = cache / "models--minzwon--MusicFM" / "snapshots" / "abc"
    shutil.copytree(MUSICFM.parent, snap)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("abc")
    muq_snap = cache / "models--OpenMuQ--MuQ-large-msd-iter" / "snapshots" / "def"
    shutil.copytree(MUQ, muq_snap)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("MIRPROBE_MODELS", raising=False)
    assert load_musicfm("f").source == snap / "pretrained_msd.pt"
    assert load_muq("m").source == muq_snap
    with pytest.raises(UserError, match=r"hf download minzwon/MusicFM pretrained_fma\.pt fma_stats\.json"):
        load_musicfm("f", variant="fma")
    assert detect_kind(str(MUQ))["kind"] == "muq"
    assert detect_kind(str(MUSICFM)) == {"kind": "musicfm", "variant": "msd"}
    assert detect_kind("OpenMuQ/MuQ-large-msd")["kind"] == "muq"


def test_cache_identity_follows_the_weights(tmp_path: Path) -> None:
    folder = _muq_copy(tmp_path)
    state = load_file(folder / "model.safetensors")
    state["model.conformer.layer_norm.bias"] = state["model.conformer.layer_norm.bias"] + 1
    save_file(state, folder / "model.safetensors")
    a, b, c = load_muq("m", checkpoint=str(MUQ)), load_muq("m", checkpoint=str(MUQ)), load_muq("m", checkpoint=str(folder))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert "weights" in a.identity()


@pytest.mark.parametrize("kind", ["muq", "musicfm"])
def test_embed_and_extraction(tmp_path: Path, kind: str) -> None:
    """``embed()`` resamples and windows as extraction does; two ranks give one process's rows."""
    ex = load(kind, context_s=2.0)
    wave = write_tone(tmp_path / "a.wav", 5.0, sr=16000, freq=330, seed=1)
    import soundfile as sf

    audio, sr = sf.read(wave, dtype="float32")
    emb = ex.embed(audio, sr)
    assert emb.shape == (4, 125, 64) and np.isfinite(emb).all()  # windows of 2 s, 2 s, 1 s
    keys = [str(write_tone(tmp_path / f"t{i}.wav", 2.5 + i, sr=22050, freq=200 + 60 * i, seed=i))
            for i in range(4)]
    rows = assert_ranks_equal_one_process(ex, keys, tmp_path, "frame")
    assert rows.shape[1:] == (4, 64)


@pytest.mark.slow
def test_run_fast_on_the_tiny_checkpoints_of_every_new_kind(tmp_path: Path) -> None:
    from mirprobe.config import load_run_config
    from mirprobe.pipeline import run

    models = (f"models=[{{name: muq-tiny, kind: muq, checkpoint: {MUQ}, context_s: 5}}, "
              f"{{name: musicfm-tiny, kind: musicfm, checkpoint: {MUSICFM}, context_s: 5}}, "
              f"{FIXTURES / 'dasheng' / 'dasheng_tiny.pt'}, "
              f"{{name: omar-tiny, kind: omar-rq, checkpoint: {FIXTURES / 'omar_rq' / 'mel'}, context_s: 5}}]")
    cfg = load_run_config("fast", ["synthetic.size=tiny", "progress=false", models,
                                   "tasks=[genre]", f"work_dir={tmp_path}"])
    records = run(cfg)
    assert sorted((r.model, r.task) for r in records) == [
        (str(FIXTURES / "dasheng" / "dasheng_tiny.pt"), "genre"), ("muq-tiny", "genre"),
        ("musicfm-tiny", "genre"), ("omar-tiny", "genre")]
    for r in records:
        assert r.layers == ["layer0", "layer1", "layer2", "layer3", "weighted"]


@pytest.mark.parametrize("path", [MUQ, MUSICFM, FIXTURES / "dasheng" / "dasheng_tiny.pt",
                                  FIXTURES / "omar_rq" / "mel", FIXTURES / "omar_rq" / "audio"])
def test_cli_verify_finds_the_kind_and_passes(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mirprobe.cli import main

    assert main(["models", "verify", str(path), "--lengths", "0.3", "5.01", "12"]) == 0
    out = capsys.readouterr().out
    assert "all 14 checks passed" in out and re.search(r"^layers +4$", out, re.M)


def test_cli_list_shows_the_published_configs(capsys: pytest.CaptureFixture[str]) -> None:
    from mirprobe.cli import main

    assert main(["models", "list"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line}
    assert rows["muq-large-msd-iter"][1:8] == ["muq", "OpenMuQ/MuQ-large-msd-iter", "24000", "25",
                                               "13", "1024", "30.0"]
    assert rows["musicfm-25hz-fma"][3:7] == ["24000", "25", "13", "1024"]
    assert rows["dasheng-1.2b"][3:8] == ["16000", "25", "41", "1536", "10.08"]
    assert rows["omar-rq-multifeature"][3:7] == ["24000", "18.75", "25", "1024"]


def test_series_finds_muq_and_omar_rq_checkpoints(tmp_path: Path) -> None:
    """``mirprobe series`` takes step folders in MuQ's and OMAR-RQ's layouts, and a listing any
    kind; the checkpoints load with the kind found."""
    from mirprobe.series.checkpoints import discover, read_listing

    for step in (100, 200):
        shutil.copytree(MUQ, tmp_path / "muq-run" / f"checkpoint-{step}")
        shutil.copytree(FIXTURES / "omar_rq" / "mel", tmp_path / "omar-run" / f"step_{step}")
    for run, kind in (("muq-run", "muq"), ("omar-run", "omar-rq")):
        name, checkpoints = discover(tmp_path / run)
        entries = [c.model_entry(name) for c in checkpoints]
        assert [e["kind"] for e in entries] == [kind, kind] and name == run
        entry = entries[1]
        assert load_model(entry.pop("name"), **entry).num_layers == 4
    listing = tmp_path / "fm.yaml"
    listing.write_text(f"checkpoints:\n  - {{step: 5, path: {MUSICFM}, kind: musicfm}}\n")
    _, [checkpoint] = read_listing(listing)
    assert checkpoint.model_entry("fm")["kind"] == "musicfm"
