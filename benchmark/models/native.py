"""What the natively loaded encoders (MuQ, MusicFM, Dasheng, OMAR-RQ) share: variant checks, the
facts a model config may state, and config digests for the cache key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mirprobe.errors import UserError
from mirprobe.models.base import Extractor

#: Facts a model config may state about its checkpoint; checked after loading.
EXPECTED = ("sample_rate", "frame_rate", "num_layers", "dim")


def check_variant(kind: str, variant: str, known: Iterable[str]) -> None:
    """An unknown variant is an error naming the known ones."""
    known = list(known)
    if variant not in known:
        raise UserError(f"{kind}: unknown variant {variant!r}; use one of {', '.join(known)}")


def expected_facts(name: str, kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The stated facts among a kind's leftover ``options``; any other key is an error."""
    unknown = sorted(k for k in options if k not in (*EXPECTED, "description"))
    if unknown:
        raise UserError(f"model {name!r} ({kind}): unknown option(s) {', '.join(unknown)}; allowed: "
                        f"variant, checkpoint, context_s, device, {', '.join(EXPECTED)}, description "
                        "(and the kind's own: see README)")
    return {k: options[k] for k in EXPECTED if options.get(k) is not None}


def check_expected(extractor: Extractor, source: Path, expected: dict[str, Any]) -> None:
    """A model config's stated facts must match the checkpoint (catches a wrong file or name)."""
    for key, value in expected.items():
        actual = getattr(extractor, key)
        if abs(float(value) - float(actual)) > 1e-6:
            raise UserError(f"model {extractor.name!r}: its config says {key} {value} but {source} "
                            f"has {actual}; point the config at the right checkpoint or fix the value")


def digest(obj: Any) -> str:
    """A short digest of a JSON-able description (architecture sizes, a config)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
