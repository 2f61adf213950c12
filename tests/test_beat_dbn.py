"""The DBN beat decoder against madmom 0.17's ``DBNBeatTrackingProcessor``.

The references in ``tests/fixtures/beat_dbn`` were made once with madmom itself (its README says
how); madmom is not a dependency.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mirprobe.tasks.beat import decode_beats
from mirprobe.tasks.beat_dbn import BeatDBN, beat_intervals, state_space

FIXTURES = Path(__file__).parent / "fixtures" / "beat_dbn"
CASES = json.loads((FIXTURES / "cases.json").read_text())


@pytest.fixture(scope="module")
def arrays():
    with np.load(FIXTURES / "cases.npz") as z:
        return {k: z[k] for k in z.files}


def test_fixtures_cover_the_required_frame_rates_and_conditions():
    assert {c["fps"] for c in CASES} >= {50, 75, 100}
    names = " ".join(c["name"] for c in CASES)
    for condition in ("noisy", "missed", "drift"):
        assert condition in names
    assert len(CASES) >= 6


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_beats_equal_madmoms(case, arrays):
    activation = arrays[f"{case['name']}.activation"].astype(case["dtype"])
    want = arrays[f"{case['name']}.beats"]
    got = BeatDBN(float(case["fps"]), **case["params"])(activation)
    assert got.shape == want.shape
    # Same frames (times are frame / fps on both sides).
    np.testing.assert_array_equal(np.rint(got * case["fps"]), np.rint(want * case["fps"]))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_decode_beats_defaults_to_the_dbn(arrays):
    case = next(c for c in CASES if c["name"] == "noisy_120bpm_75fps")
    activation = arrays[f"{case['name']}.activation"].astype(np.float64)
    np.testing.assert_array_equal(decode_beats(activation, 75.0),
                                  arrays[f"{case['name']}.beats"])
    with pytest.raises(ValueError, match="unknown beat decoder"):
        decode_beats(activation, 75.0, method="hmm")


def test_state_space_sizes_follow_the_published_definition():
    # 75 fps, 55–215 BPM: intervals round(60·75/215) = 21 … round(60·75/55) = 82 frames.
    np.testing.assert_array_equal(beat_intervals(60 * 75 / 215, 60 * 75 / 55), np.arange(21, 83))
    st = state_space(75.0)
    assert len(st.state_interval) == sum(range(21, 83))
    # num_tempi limits the intervals to that many distinct log-spaced integers.
    assert len(beat_intervals(60 * 100 / 215, 60 * 100 / 55, 60)) == 60
    # A beat state is one of the first 1/16 of a beat's positions.
    for n in (21, 48, 82):
        j = int(np.flatnonzero(st.intervals == n)[0])
        beat = st.beat_state[st.state_interval == j]
        np.testing.assert_array_equal(beat, np.arange(n) / n < 1 / 16)


def test_input_checks():
    with pytest.raises(ValueError, match="1-D"):
        BeatDBN(75.0)(np.zeros((10, 2)))
    assert BeatDBN(75.0)(np.zeros(100)).size == 0  # an all-zero activation has no beats


def test_task_option_dbn_reaches_the_decoder(arrays):
    """``dbn: {num_tempi: 60}`` on the task decodes as madmom with ``num_tempi=60``."""
    from mirprobe.plugins import get_task

    case = next(c for c in CASES if c["params"] == {"num_tempi": 60})
    activation = arrays[f"{case['name']}.activation"].astype(np.float64)
    logits = np.log(activation / (1 - activation))[:, None].repeat(2, 1)
    task = get_task("beat", dbn={"num_tempi": 60})
    (decoded,) = task.predictions([logits], frame_rate=float(case["fps"]))
    want = arrays[f"{case['name']}.beats"]
    np.testing.assert_array_equal(np.rint(np.array(decoded["beat"]) * case["fps"]),
                                  np.rint(want * case["fps"]))
