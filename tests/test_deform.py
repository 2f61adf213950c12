"""Audio deformations against independent measurements (numpy power ratios and spectra, scipy
Welch estimates), their parameters' errors, their identities, and the labels they move."""

from __future__ import annotations

import numpy as np
import pytest

from mirprobe.config import load_run_config
from mirprobe.deform import impulse_response, parse, parse_all
from mirprobe.errors import UserError

SR = 16000


def tone(freq: float, seconds: float = 2.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def music(seconds: float = 3.0, sr: int = SR) -> np.ndarray:
    """A few harmonics with a slow tremolo: something codecs and filters have to work on."""
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220, 330, 440, 1250, 3000), 1))
    return (0.2 * x * (1 + 0.3 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def db(power_ratio: float) -> float:
    return 10 * np.log10(power_ratio)


def level_at(x: np.ndarray, freq: float, sr: int = SR) -> float:
    """Amplitude of the sinusoid at ``freq`` (projection on sin and cos, numpy only)."""
    t = np.arange(len(x)) / sr
    s, c = np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)
    return float(np.hypot(x @ s, x @ c) * 2 / len(x))


@pytest.mark.parametrize("color", ["white", "pink"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 25.5])
def test_noise_has_the_requested_snr(color, snr) -> None:
    x = music()
    y = parse({"name": "noise", "snr_db": snr, "color": color}, "k").apply(x, SR, "a.wav")
    n = y.astype(np.float64) - x
    assert abs(db(np.mean(x.astype(np.float64) ** 2) / np.mean(n * n)) - snr) < 0.1


def test_pink_noise_falls_by_one_decade_per_decade_and_white_is_flat() -> None:
    from scipy.signal import welch

    x = np.zeros(SR * 20, np.float32)
    x[::100] = 1.0  # a signal to measure the SNR against; the noise dominates its spectrum
    slopes = {}
    for color in ("white", "pink"):
        d = parse({"name": "noise", "snr_db": -30, "color": color}, "k")
        f, p = welch(d.apply(x, SR, "a.wav") - x, SR, nperseg=4096)
        band = (f > 50) & (f < 5000)
        slopes[color] = np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0]
    assert abs(slopes["pink"] + 1) < 0.1 and abs(slopes["white"]) < 0.1


def test_noise_is_seeded_per_file_and_deterministic() -> None:
    x = music(1.0)
    d = parse({"name": "noise", "snr_db": 10}, "k")
    assert np.array_equal(d.apply(x, SR, "a.wav"), d.apply(x, SR, "a.wav"))
    assert not np.array_equal(d.apply(x, SR, "a.wav"), d.apply(x, SR, "b.wav"))
    other = parse({"name": "noise", "snr_db": 10, "seed": 1}, "k")
    assert not np.array_equal(d.apply(x, SR, "a.wav"), other.apply(x, SR, "a.wav"))


@pytest.mark.parametrize("gain_db", [-12.0, 0.0, 6.0])
def test_gain_is_exact(gain_db) -> None:
    x = music(1.0)
    y = parse({"name": "gain", "db": gain_db}, "k").apply(x, SR)
    np.testing.assert_allclose(y, x.astype(np.float64) * 10 ** (gain_db / 20), rtol=1e-6)


def test_lowpass_removes_a_tone_above_its_cutoff_and_keeps_one_below() -> None:
    d = parse({"name": "lowpass", "cutoff_hz": 1000}, "k")
    high, low = tone(4000), tone(200)
    assert 20 * np.log10(level_at(d.apply(high, SR), 4000) / level_at(high, 4000)) < -60
    assert abs(20 * np.log10(level_at(d.apply(low, SR), 200) / level_at(low, 200))) < 0.1


def test_telephone_band_passes_300_to_3400_hz() -> None:
    d = parse("telephone", "k")
    for freq, at_most, at_least in ((80, -40, None), (6500, -40, None), (1000, 0.1, -0.1)):
        x = tone(freq)
        gain = 20 * np.log10(level_at(d.apply(x, SR), freq) / level_at(x, freq))
        assert gain < at_most and (at_least is None or gain > at_least), (freq, gain)


def test_filter_edges_beyond_nyquist_leave_the_signal_alone() -> None:
    x = music(1.0, sr=8000)
    np.testing.assert_allclose(parse({"name": "lowpass", "cutoff_hz": 5000}, "k").apply(x, 8000), x)


@pytest.mark.parametrize("fmt", ["mp3", "vorbis", "opus"])
@pytest.mark.parametrize("sr", [16000, 22050])
def test_codec_round_trip_changes_the_signal_but_keeps_its_length(fmt, sr) -> None:
    x = music(2.0, sr)
    y = parse({"name": "codec", "format": fmt, "compression": 0.9}, "k").apply(x, sr)
    assert len(y) == len(x)
    err = y.astype(np.float64) - x
    assert np.abs(err).max() > 1e-3  # lossy: not the input
    # still the same music: the round trip's error is well below the signal (a delayed or
    # garbled decode would not be)
    assert db(np.mean(x.astype(np.float64) ** 2) / np.mean(err**2)) > 5


def test_time_stretch_changes_the_duration_by_the_rate() -> None:
    x = music(4.0)
    for rate in (0.8, 1.1, 1.25):
        y = parse({"name": "stretch", "rate": rate}, "k").apply(x, SR)
        assert abs(len(y) - len(x) / rate) <= 0.01 * len(x) / rate


def test_pitch_shift_moves_a_tone_by_the_semitones_and_keeps_the_length() -> None:
    x = tone(440, 2.0)
    y = parse({"name": "pitch", "semitones": 2}, "k").apply(x, SR)
    assert len(y) == len(x)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak = np.fft.rfftfreq(len(y), 1 / SR)[np.argmax(spectrum)]
    assert abs(peak - 440 * 2 ** (2 / 12)) < 2.0


def test_reverb_decays_60_db_over_rt60_keeps_loudness_and_is_seeded() -> None:
    h = impulse_response(SR, 0.5, seed=3)
    assert len(h) == SR // 2 and abs(np.sum(h * h) - 1) < 1e-9
    # the envelope (RMS over 20 ms) falls ~60 dB over rt60: compare its first and last blocks
    blocks = np.sqrt(np.mean(h[: len(h) // 320 * 320].reshape(-1, 320) ** 2, axis=1))
    fall = 20 * np.log10(blocks[0] / blocks[-1])
    assert 50 < fall < 70
    x = music(1.0)
    d = parse({"name": "reverb", "rt60_s": 0.5, "seed": 3}, "k")
    y = d.apply(x, SR)
    assert len(y) == len(x) and abs(np.std(y) / np.std(x) - 1) < 1e-3
    assert np.array_equal(y, d.apply(x, SR)) and not np.allclose(y, x, atol=1e-3)
    assert not np.array_equal(impulse_response(SR, 0.5, 4), h)


def test_parameters_are_checked_with_the_key_named() -> None:
    def err(*entries) -> str:  # noqa: ANN002
        with pytest.raises(UserError) as e:
            parse_all(list(entries))
        return str(e.value)

    assert "'robustness.deformations[0].name': unknown deformation 'nois'" in err({"name": "nois"})
    assert "'robustness.deformations[1].snr_db': 'abc' is not a number" in err(
        "telephone", {"name": "noise", "snr_db": "abc"})
    assert "'robustness.deformations[0].rate'" in err({"name": "stretch", "rate": 0})
    assert "a number > 0" in err({"name": "stretch", "rate": -1.5})
    assert "'robustness.deformations[0].snr_db' is required" in err({"name": "noise"})
    assert "has no parameter 'snr'" in err({"name": "noise", "snr": 3})
    assert "'robustness.deformations[0].color': 'red'" in err({"name": "noise", "snr_db": 3,
                                                               "color": "red"})
    assert "'robustness.deformations[0].order': 2.5 is not a whole number" in err(
        {"name": "lowpass", "cutoff_hz": 100, "order": 2.5})
    assert "given twice" in err({"name": "gain", "db": 3}, {"name": "gain", "db": 3.0})
    assert "not below high_hz" in err({"name": "telephone", "low_hz": 4000})
    # and through a run config, before anything runs
    with pytest.raises(UserError, match=r"robustness.deformations\[0\].rate"):
        load_run_config("robustness", ["robustness.deformations=[{name: stretch, rate: 0}]"])


def test_every_parameter_is_part_of_the_identity() -> None:
    a = parse({"name": "noise", "snr_db": 10}, "k")
    assert a.identity() == {"name": "noise", "snr_db": 10.0, "color": "white", "seed": 0,
                            "version": 1}
    assert a.identity() == parse({"name": "noise", "snr_db": 10.0, "color": "white"}, "x").identity()
    assert a.identity() != parse({"name": "noise", "snr_db": 10, "seed": 1}, "k").identity()
    assert a.label == "noise(color=white,seed=0,snr_db=10)"


def test_beat_labels_follow_a_time_stretch_and_keys_a_pitch_shift() -> None:
    from mirprobe.deform import check_task, relabel
    from mirprobe.plugins import get_task

    beat, key, chord = get_task("beat"), get_task("key"), get_task("chord")
    stretch = parse({"name": "stretch", "rate": 1.25}, "robustness.deformations[2]")
    label = {"beat": [0.5, 1.0, 1.5], "downbeat": [0.5], "tempo": 120}
    assert relabel(stretch, beat, label) == {"beat": [0.4, 0.8, 1.2], "downbeat": [0.4],
                                             "tempo": 150.0}
    assert label["beat"] == [0.5, 1.0, 1.5]  # the dataset's label is not modified
    check_task(stretch, beat, "beat")
    with pytest.raises(UserError, match=r"'robustness.deformations\[2\]': task 'chords' cannot"):
        check_task(stretch, chord, "chords")
    up3 = parse({"name": "pitch", "semitones": 3}, "k")
    assert relabel(up3, key, "A minor") == "C minor"
    assert relabel(parse({"name": "pitch", "semitones": -1}, "k"), key, "C major") == "B major"
    assert relabel(up3, get_task("genre"), "rock") == "rock"
    check_task(up3, key, "key")
    with pytest.raises(UserError, match="whole number of semitones"):
        check_task(parse({"name": "pitch", "semitones": 0.5}, "k"), key, "key")
