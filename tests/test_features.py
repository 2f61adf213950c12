"""Feature cache: extraction matches direct embedding, resumes, publishes atomically, invalidates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from mirprobe.audio import resample, window_bounds
from mirprobe.features import FeatureStore, entry_id, entry_identity
from mirprobe.models.handcrafted import HandcraftedExtractor
from mirprobe.models.random import SmallRandomExtractor
from tests.conftest import write_tone


class Interrupt(Exception):
    pass


class CountingExtractor(SmallRandomExtractor):
    """Counts windows seen; can be told to fail after a number of forward passes."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__("random", seed=0)
        self.fail_after, self.calls, self.windows = fail_after, 0, 0

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise Interrupt
        self.calls += 1
        self.windows += len(waves)
        return super().forward(waves)


@pytest.fixture
def tracks(tmp_path: Path) -> list[str]:
    lengths = [0.4, 1.3, 2.0, 4.5, 0.7, 3.3]
    return [str(write_tone(tmp_path / "audio" / f"{i}.wav", s, freq=200 + 50 * i, seed=i))
            for i, s in enumerate(lengths)]


@pytest.mark.parametrize("view", ["clip", "frame"])
@pytest.mark.parametrize("make", [HandcraftedExtractor, SmallRandomExtractor])
def test_entry_matches_direct_embedding(tmp_path: Path, tracks: list[str], view: str, make: Any) -> None:
    ex = make()
    entry = FeatureStore(tmp_path / "f").extract(ex, tracks, view=view, window_s=2.0, batch_size=3,
                                                 chunk_items=3, progress=False)
    assert entry.features.dtype == np.float16 and entry.failed == []
    for i, key in enumerate(tracks):
        wave, sr = sf.read(key, dtype="float32")
        ex.context_s = 2.0
        ref = ex.embed(wave, sr)  # [L, frames, D], one window at a time
        got = np.asarray(entry.features[entry.rows(i)], dtype=np.float32)
        if view == "frame":
            np.testing.assert_allclose(got.transpose(1, 0, 2), ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
        else:
            n_windows = int(np.ceil(len(wave) / sr / 2.0 - 1e-9))
            assert got.shape[0] == n_windows
            first = ex.pool(torch.from_numpy(ref[:, None, : ex.num_frames(int(2.0 * ex.sample_rate))]))
            np.testing.assert_allclose(got[0], first[:, 0].numpy(), rtol=2e-3,
                                       atol=2e-3 * float(first.abs().max()))


def test_resume_after_interruption_does_not_recompute(tmp_path: Path, tracks: list[str]) -> None:
    store = FeatureStore(tmp_path / "f")
    crashing = CountingExtractor(fail_after=4)
    with pytest.raises(Interrupt):
        store.extract(crashing, tracks, window_s=2.0, batch_size=1, chunk_items=2, progress=False)
    eid = entry_id(entry_identity(crashing, tracks, "clip", 2.0))
    assert store.get(eid) is None, "an unfinished entry must stay invisible"
    done_chunks = sorted(p.name for p in store.partial_path(eid).glob("chunk*.npz"))
    assert done_chunks, "finished chunks are kept"
    resumed = CountingExtractor()
    entry = store.extract(resumed, tracks, window_s=2.0, batch_size=1, chunk_items=2, progress=False)
    fresh = CountingExtractor()
    ref = FeatureStore(tmp_path / "g").extract(fresh, tracks, window_s=2.0, batch_size=1,
                                               chunk_items=2, progress=False)
    assert resumed.windows < fresh.windows  # finished chunks were not recomputed
    assert resumed.windows + crashing.windows >= fresh.windows
    np.testing.assert_array_equal(np.asarray(entry.features), np.asarray(ref.features))
    np.testing.assert_array_equal(entry.offsets, ref.offsets)
    assert not store.partial_path(eid).exists()
    again = CountingExtractor()
    store.extract(again, tracks, window_s=2.0, batch_size=1, chunk_items=2, progress=False)
    assert again.windows == 0  # a complete entry is reused as is


def test_identity_changes_invalidate(tmp_path: Path, tracks: list[str]) -> None:
    ex = SmallRandomExtractor()
    base = entry_id(entry_identity(ex, tracks, "clip", 5.0))
    assert entry_id(entry_identity(ex, tracks, "clip", 5.0)) == base
    assert entry_id(entry_identity(ex, tracks, "frame", 5.0)) != base
    assert entry_id(entry_identity(ex, tracks, "clip", 4.0)) != base
    assert entry_id(entry_identity(SmallRandomExtractor(seed=1), tracks, "clip", 5.0)) != base
    assert entry_id(entry_identity(ex, tracks[:-1], "clip", 5.0)) != base
    write_tone(Path(tracks[0]), 0.9)  # content changed on disk
    assert entry_id(entry_identity(ex, tracks, "clip", 5.0)) != base


def test_unusable_items_are_listed_not_dropped(tmp_path: Path, tracks: list[str]) -> None:
    bad = tmp_path / "audio" / "corrupt.wav"
    bad.write_bytes(b"RIFFxxxxWAVE")
    tiny = write_tone(tmp_path / "audio" / "tiny.wav", 0.005)  # shorter than one frame
    keys = [*tracks, str(bad), str(tiny), str(tmp_path / "missing.wav")]
    entry = FeatureStore(tmp_path / "f").extract(HandcraftedExtractor(), keys, progress=False)
    reasons = {f["path"]: f["reason"] for f in entry.failed}
    assert set(reasons) == {str(bad), str(tiny), str(tmp_path / "missing.wav")}
    assert "cannot decode" in reasons[str(bad)] and "shorter than one feature frame" in reasons[str(tiny)]
    for i in range(len(tracks), len(keys)):
        assert entry.rows(i).stop == entry.rows(i).start
    assert len(entry.items) == len(keys)


def test_precision_is_part_of_the_entry(tmp_path: Path, tracks: list[str]) -> None:
    from mirprobe.errors import UserError

    store = FeatureStore(tmp_path / "f")
    fp32 = store.extract(SmallRandomExtractor(), tracks, progress=False)
    bf16 = store.extract(SmallRandomExtractor(), tracks, dtype="bfloat16", progress=False)
    assert fp32.id != bf16.id
    a, b = np.asarray(fp32.features, np.float32), np.asarray(bf16.features, np.float32)
    assert 0 < np.abs(a - b).max() < 0.1 * np.abs(a).max(), "bf16 autocast ran, and stays close"
    assert store.extract(SmallRandomExtractor(), tracks, dtype="auto", progress=False).id == fp32.id
    with pytest.raises(UserError, match="float16 needs a CUDA GPU"):
        store.extract(SmallRandomExtractor(), tracks, dtype="float16", progress=False)


def test_worker_processes_give_the_same_entry(tmp_path: Path, tracks: list[str]) -> None:
    bad = tmp_path / "audio" / "corrupt.wav"
    bad.write_bytes(b"RIFFxxxxWAVE")
    keys = [*tracks, str(bad)]
    kwargs = {"window_s": 2.0, "batch_size": 3, "chunk_items": 2, "progress": False}
    alone = FeatureStore(tmp_path / "a").extract(SmallRandomExtractor(), keys, num_workers=0, **kwargs)
    workers = FeatureStore(tmp_path / "b").extract(SmallRandomExtractor(), keys, num_workers=2, **kwargs)
    np.testing.assert_array_equal(np.asarray(alone.features), np.asarray(workers.features))
    np.testing.assert_array_equal(alone.offsets, workers.offsets)
    assert [f["path"] for f in workers.failed] == [str(bad)]


def test_streamed_windows_match_whole_track_decoding(tmp_path: Path) -> None:
    from mirprobe.audio import load_audio, stream_windows, window_bounds

    path = write_tone(tmp_path / "long.wav", 23.3, sr=44100, channels=2)
    whole = load_audio(path, 24000)
    windows = list(stream_windows(path, 24000, 24000 * 5, min_samples=400, block_s=3.0))
    bounds = window_bounds(len(whole), 24000 * 5, 400)
    assert [len(w) for w in windows] == [b - a for a, b in bounds]
    for w, (a, b) in zip(windows, bounds, strict=True):
        np.testing.assert_allclose(w, whole[a:b], atol=1e-4)


class ReversingExtractor(SmallRandomExtractor):
    """Prepares each window by reversing it in time: only a path through prepare() sees it."""

    def prepare(self, wave: np.ndarray) -> np.ndarray:
        return wave[::-1].copy()

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "prepare": "reversed"}


def test_extraction_honours_prepare(tmp_path: Path, tracks: list[str]) -> None:
    """Production extraction runs every window through Extractor.prepare(), as embed() does:
    its rows are the windows reversed by hand, fed to the plain model."""
    plain, reversing = SmallRandomExtractor(), ReversingExtractor()
    entry = FeatureStore(tmp_path / "f").extract(reversing, tracks[:2], view="frame", window_s=1.0,
                                                 batch_size=1, chunk_items=2, progress=False)
    for i, key in enumerate(tracks[:2]):
        wave, sr = sf.read(key, dtype="float32")
        wave = resample(wave, sr, plain.sample_rate)
        parts = []
        for a, b in window_bounds(len(wave), plain.sample_rate, 400):
            chunk = torch.from_numpy(wave[a:b][::-1].copy())[None]
            parts.append(plain.forward(chunk)[:, 0].float().detach().numpy())
        ref = np.concatenate(parts, axis=1)
        got = np.asarray(entry.features[entry.rows(i)], dtype=np.float32).transpose(1, 0, 2)
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
