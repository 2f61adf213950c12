"""A toy pre-training run to try ``mirprobe series`` on: checkpoints that get better with the step.

    python examples/series/make_series.py /tmp/toy
    mirprobe series /tmp/toy/toy-run /tmp/toy/tone.yaml

writes ``OUT/tone/`` (a 3-class pitch task in MARBLE's JSONL format: a tone whose pitch is the
label, buried in high-frequency noise of a random level), ``OUT/toy-run/step_<N>/`` (tiny
HuBERT models saved by transformers — ``config.json``, ``model.safetensors``,
``preprocessor_config.json`` — identical but for their first convolution) and ``OUT/tone.yaml``
(the run config). The first convolution goes from a high-pass filter, which hears only the
noise, to a low-pass filter, which hears the tone: the probe score rises with the step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SAMPLE_RATE = 24000
PITCHES = {"low": 220.0, "mid": 330.0, "high": 495.0}
#: step → share of the low-pass filter in the first convolution
STEPS = {0: 0.0, 1000: 0.25, 2000: 0.5, 3000: 0.75, 4000: 1.0}


def write_tone_task(folder: Path, per_class: tuple[int, int, int] = (10, 6, 8), seed: int = 0) -> dict:
    """1-s clips: a tone of the label's pitch plus high-frequency noise at 0.1–10× its level;
    returns the task's inline config entry."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    for split, n in zip(("train", "val", "test"), per_class, strict=True):
        rows = []
        for label, freq in PITCHES.items():
            for i in range(n):
                tone = 0.3 * np.sin(2 * np.pi * freq * (1 + 0.02 * rng.standard_normal()) * t
                                    + rng.uniform(0, 2 * np.pi))
                hiss = np.diff(rng.standard_normal(len(t) + 2), 2) / 2 * 0.5 * 10 ** rng.uniform(-1, 1)
                x = tone + hiss
                path = folder / "audio" / f"{split}_{label}_{i}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, (0.9 * x / np.abs(x).max()).astype(np.float32), SAMPLE_RATE,
                         subtype="PCM_16")
                rows.append(json.dumps({"audio_path": f"audio/{path.name}", "label": label}))
        (folder / f"Tone.{split}.jsonl").write_text("\n".join(rows) + "\n")
    return {"name": "tone", "plugin": "multiclass", "data": str(folder), "jsonl": "Tone"}


def first_conv(t: float, channels: int = 16, kernel: int = 10) -> torch.Tensor:
    """``(1 - t) · high-pass + t · low-pass`` filters ``[channels, 1, kernel]`` (fixed seed)."""
    gen = torch.Generator().manual_seed(1)
    low = torch.hann_window(kernel + 2)[1:-1].expand(channels, 1, kernel)
    low = low * (1 + 0.3 * torch.rand(channels, 1, 1, generator=gen)) / 2
    high = torch.zeros(channels, 1, kernel)
    high[:, 0, 0], high[:, 0, 1] = 1.0, -1.0
    return (1 - t) * high * torch.sign(torch.randn(channels, 1, 1, generator=gen)) + t * low


def write_checkpoints(folder: Path, steps: dict[int, float] = STEPS) -> list[Path]:
    """Tiny HuBERT checkpoints ``step_<N>/`` with MERT's conv strides and a 24 kHz input."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=64, conv_dim=[16] * 7, num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    model = HubertModel(config).eval()
    out = []
    for step, t in steps.items():
        with torch.no_grad():
            model.feature_extractor.conv_layers[0].conv.weight.copy_(first_conv(t))
        path = folder / f"step_{step}"
        model.save_pretrained(path)
        Wav2Vec2FeatureExtractor(sampling_rate=SAMPLE_RATE, do_normalize=True).save_pretrained(path)
        out.append(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write")
    out = parser.parse_args().out.resolve()
    task = write_tone_task(out / "tone")
    write_checkpoints(out / "toy-run")
    (out / "tone.yaml").write_text(
        "# mirprobe series OUT/toy-run OUT/tone.yaml: the toy task, linear probes\n"
        f"name: toy\ntasks:\n  - {json.dumps(task)}\n"
        "probe:\n  heads: [linear]\n  lr: [1e-2]\n  max_epochs: 30\n")
    print(f"wrote {out}/tone, {out}/toy-run/step_*, {out}/tone.yaml; now run:\n"
          f"  mirprobe series {out}/toy-run {out}/tone.yaml")


if __name__ == "__main__":
    main()
