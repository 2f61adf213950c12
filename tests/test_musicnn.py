"""MusiCNN: every layer equals the original TensorFlow graph's (fixtures made once with musicnn +
TensorFlow, see tests/fixtures/musicnn/README.md); the mel equals librosa's; the checkpoint reader
refuses missing, truncated and corrupt files; mixed-width layers go through the cache and probes."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from mirprobe.errors import UserError
from mirprobe.models.musicnn import FRAME_LAYERS, PATCH_LAYERS, MusicnnNet
from mirprobe.models.tfbundle import crc32c
from tests.conftest import write_tone

FIXTURES = Path(__file__).parent / "fixtures" / "musicnn"
WINDOW = 47872  # 187 frames of hop 256
HAS_MUSICNN = importlib.util.find_spec("musicnn") is not None
needs_weights = pytest.mark.skipif(
    not HAS_MUSICNN, reason="the musicnn wheel is not installed: pip install --no-deps musicnn==0.1.0")


def fixture_windows() -> np.ndarray:
    with np.load(FIXTURES / "audio.npz") as z:
        wave = z["pcm"].astype(np.float32) / 32768
    return np.stack([wave[:WINDOW], wave[WINDOW:]])


def librosa_logmel(windows: np.ndarray) -> np.ndarray:
    """musicnn's input as its extractor.py computes it, the log in float32."""
    mels = [librosa.feature.melspectrogram(y=w, sr=16000, hop_length=256, n_fft=512, n_mels=96).T[:187]
            for w in windows]
    return np.log10(10000 * np.stack(mels).astype(np.float32) + 1)


def relative(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def test_logmel_matches_librosa() -> None:
    windows = fixture_windows()
    ours = MusicnnNet({}).logmel(torch.from_numpy(windows)).numpy()
    assert ours.shape == (2, 187, 96)
    assert relative(ours, librosa_logmel(windows)) < 1e-5


@needs_weights
@pytest.mark.parametrize("checkpoint", ["MTT_musicnn", "MSD_musicnn"])
def test_every_layer_matches_tensorflow(checkpoint: str) -> None:
    from mirprobe.models.musicnn import MusicnnExtractor

    ref = dict(np.load(FIXTURES / f"{checkpoint}.npz"))
    frames = ref.pop("frames")
    ex = MusicnnExtractor(checkpoint.lower(), checkpoint=checkpoint)
    with torch.inference_mode():
        hidden = ex.forward(torch.from_numpy(fixture_windows()))  # [4, 2, 187, 561]
        clip = ex.pool(hidden)  # [8, 2, 753]
        on_librosa = ex.net.frames(torch.from_numpy(librosa_logmel(fixture_windows())))
    assert ex.view_layers("frame") == list(FRAME_LAYERS)
    assert ex.view_layers("clip") == [*FRAME_LAYERS, *PATCH_LAYERS]
    for i, (name, width) in enumerate(FRAME_LAYERS.items()):
        assert relative(hidden[i][:, frames, :width].numpy(), ref[name]) <= 1e-3, name
        assert relative(on_librosa[i].transpose(1, 2)[:, frames].numpy(), ref[name]) <= 1e-3, name
        assert not hidden[i][..., width:].any(), f"{name}: padding past its width"
        # the clip view of a frame layer is its mean over the window (the reference's mean pool)
        start = sum(list(FRAME_LAYERS.values())[:i])
        assert relative(clip[i, :, :width].numpy(), ref["mean_pool"][:, start:start + width]) <= 1e-3
    for j, (name, width) in enumerate(PATCH_LAYERS.items()):
        assert relative(clip[4 + j, :, :width].numpy(), ref[name]) <= 1e-3, name
        assert not clip[4 + j, :, width:].any()
    assert np.abs(ref["taggram"][0] - ref["taggram"][1]).max() > 0.05  # two inputs, two taggrams


def bitwise_crc32c(data: bytes) -> int:
    """The textbook bit-at-a-time CRC-32C (reflected polynomial 0x82F63B78)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize("size", [0, 9, 1023, 1024, 4099])
def test_crc32c_matches_the_bitwise_definition(size: int) -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C catalogue's check value
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32c(data) == bitwise_crc32c(data)


@pytest.fixture
def copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the wheel's MTT checkpoint that the loader is pointed at."""
    from mirprobe.models import musicnn

    folder = tmp_path / "musicnn" / "MTT_musicnn"
    shutil.copytree(musicnn.package_folder() / "MTT_musicnn", folder)
    monkeypatch.setattr(musicnn, "package_folder", lambda: folder.parent)
    return folder


@needs_weights
@pytest.mark.parametrize("damage, words", [
    ("truncate-data", "(truncated)"), ("flip-data", "fails its checksum"),
    ("truncate-index", "not a readable"), ("flip-index", "checksum mismatch"),
    ("remove-data", "not found"), ("remove-index", "not found"),
])
def test_damaged_checkpoint_is_one_line_error(copied: Path, damage: str, words: str) -> None:
    from mirprobe.models.musicnn import load_weights
    from mirprobe.models.tfbundle import read_index

    data, index = copied / ".data-00000-of-00001", copied / ".index"
    kernel = read_index(index)["conv2d_1/kernel"]  # a weight inference uses
    target = data if damage.endswith("data") else index
    if damage.startswith("truncate"):
        target.write_bytes(target.read_bytes()[: target.stat().st_size - 1000])
    elif damage.startswith("flip"):
        raw = bytearray(target.read_bytes())
        raw[kernel["offset"] + kernel["size"] // 2 if target is data else 100] ^= 0x40
        target.write_bytes(bytes(raw))
    else:
        target.unlink()
    with pytest.raises(UserError) as e:
        load_weights("MTT_musicnn")
    message = str(e.value)
    assert words in message and str(copied) in message and "musicnn==0.1.0" in message
    assert "\n" not in message


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from mirprobe.models import load_model

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(UserError, match=r"pip install --no-deps musicnn==0\.1\.0"):
        load_model("musicnn-mtt")


@needs_weights
@pytest.mark.parametrize("view", ["clip", "frame"])
def test_mixed_widths_through_cache_and_probe_data(tmp_path: Path, view: str) -> None:
    from mirprobe.features import FeatureStore
    from mirprobe.models.musicnn import MusicnnExtractor
    from mirprobe.probes.data import FeatureSource

    keys = [str(write_tone(tmp_path / f"{i}.wav", s, sr=16000, freq=300 + 90 * i, seed=i))
            for i, s in enumerate([1.0, 4.0, 6.5])]
    ex = MusicnnExtractor("musicnn-mtt")
    entry = FeatureStore(tmp_path / "features").extract(ex, keys, view=view, batch_size=2, progress=False)
    names, dims = ex.view_layers(view), ex.layer_dims(view)
    assert entry.layer_names == names and entry.layer_dims == dims
    assert entry.meta["layer_rates"][0] == 62.5
    feats = np.asarray(entry.features, dtype=np.float32)
    assert feats.shape[1:] == (len(names), max(dims))
    for i, d in enumerate(dims):
        assert not feats[:, i, d:].any() and feats[:, i, :d].std(0).max() > 0
    # standardisation: true columns are numpy's z-scores, padded columns exactly 0, nothing infinite
    rows = np.arange(len(feats))
    source = FeatureSource(entry.features, rows, torch.device("cpu"), budget=1 << 30)
    source.fit_standardiser(rows)
    z = torch.cat([x for _, x in source.ordered(rows)]).numpy()
    std = feats.astype(np.float64).std(0)
    ok = std > 1e-6
    expect = np.where(ok, (feats - feats.mean(0)) / np.where(ok, std, 1), 0)
    assert np.isfinite(z).all() and np.allclose(z, expect, atol=1e-3)
    for i, d in enumerate(dims):
        assert not z[:, i, d:].any()
    # The heads' products leave each layer's padding out (and a trailing dead unit: 3 clips).
    assert all(d - 8 < w <= d for w, d in zip(source.widths, dims, strict=True))
    assert not any(z[:, i, w:].any() for i, w in enumerate(source.widths))


def test_run_without_the_wheel_fails_before_any_work(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from mirprobe.config import load_run_config
    from mirprobe.pipeline import run

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    cfg = load_run_config("quickstart", ["synthetic.size=tiny", "progress=false", f"work_dir={tmp_path}"])
    with pytest.raises(UserError, match=r"pip install --no-deps musicnn==0\.1\.0"):
        run(cfg)
    assert not (tmp_path / "synthetic").exists() and not (tmp_path / "features").exists()


@needs_weights
def test_tiny_run_probes_every_layer(tmp_path: Path) -> None:
    from mirprobe.config import load_run_config
    from mirprobe.pipeline import run

    cfg = load_run_config("quickstart", [
        "synthetic.size=tiny", "tasks=[key,genre,tagging,emotion,beat]", "progress=false",
        "models=[musicnn-mtt]", f"work_dir={tmp_path}",
        "probe.heads=[linear]", "probe.lr=[1e-2]", "probe.max_epochs=3"])
    records = {r.task: r for r in run(cfg)}
    assert sorted(records) == ["beat", "emotion", "genre", "key", "tagging"]
    assert records["genre"].layers == [*FRAME_LAYERS, *PATCH_LAYERS, "weighted"]
    assert records["beat"].layers == [*FRAME_LAYERS, "weighted"]
