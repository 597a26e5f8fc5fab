"""Upscaling factors: which a CARN can have, what ``all`` means, and how a branch is staged.

Every tool reads scales through :func:`parse_scales`, so ``--scale all`` means the same
everywhere: every scale the model at hand has, or the paper's x2/x3/x4 where no model is
known yet (training a new one, ``multi`` being the training-flavoured synonym).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

#: Factors an upsampling branch can be built for: PixelShuffle stages of 2 (x2, x4, x8) or one of 3.
SUPPORTED_SCALES: tuple[int, ...] = (2, 3, 4, 8)
#: The paper's multi-scale model (and the shipped CARN-M weights): one branch each.
PAPER_SCALES: tuple[int, ...] = (2, 3, 4)
#: Words that mean "every scale available".
ALL_WORDS = frozenset({"all", "multi"})

_HINT = "use 'all', one scale such as 4, or a list such as 2,3,4"


def upsample_stages(scale: int) -> tuple[int, ...]:
    """PixelShuffle factors of the branch for ``scale``: (2,) x log2(s) for powers of two, (3,) for x3."""
    if scale == 3:
        return (3,)
    if scale in SUPPORTED_SCALES:
        return (2,) * int(math.log2(scale))
    raise ValueError(f"unsupported scale x{scale}; use {_listed(SUPPORTED_SCALES)}")


def check_scale(scale: object, available: Sequence[int] | None = None) -> int:
    """``scale`` as an int if it is supported (and among ``available`` when given), else ``ValueError``."""
    if isinstance(scale, bool) or not (isinstance(scale, int) or _is_numpy_int(scale)):
        raise ValueError(f"unsupported scale {scale!r}; use one of {_numbers(available or SUPPORTED_SCALES)}")
    s = int(scale)  # type: ignore[call-overload]
    if s not in SUPPORTED_SCALES:
        raise ValueError(f"unsupported scale {s}; use one of {_numbers(available or SUPPORTED_SCALES)}")
    if available is not None and s not in available:
        raise ValueError(f"scale x{s} not available; this model has {list(available)}")
    return s


def parse_scales(spec: str | int | Iterable[int], available: Sequence[int] | None = None) -> tuple[int, ...]:
    """Parse a scale spec: ``"all"``/``"multi"`` -> ``available`` (default the paper's 2, 3, 4);
    ``"4"`` or 4 -> (4,); ``"2,4"`` or [2, 4] -> (2, 4). Distinct and sorted.

    ``available`` (the scales of the model at hand) also bounds explicit lists. Raises
    ``ValueError`` starting "bad scale spec" for malformed or unsupported values, and
    "the weights have no xS branch" for a supported scale the model lacks.
    """
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ALL_WORDS:
            return tuple(sorted(available)) if available is not None else PAPER_SCALES
        parts = [p.strip() for p in text.split(",")]
        if not all(p.isdigit() for p in parts):
            raise ValueError(f"bad scale spec {spec!r}: {_HINT}")
        scales = [int(p) for p in parts]
    elif isinstance(spec, bool):
        raise ValueError(f"bad scale spec {spec!r}: {_HINT}")
    elif isinstance(spec, int):
        scales = [spec]
    elif isinstance(spec, (list, tuple)) and all(isinstance(s, int) and not isinstance(s, bool) for s in spec):
        scales = list(spec)
    else:
        raise ValueError(f"bad scale spec {spec!r}: {_HINT}")
    allowed = SUPPORTED_SCALES if available is None else tuple(sorted(available))
    if not scales or any(s not in SUPPORTED_SCALES for s in scales) or len(set(scales)) != len(scales):
        raise ValueError(f"bad scale spec {spec!r}: scales must be among {_numbers(allowed)}, each once")
    missing = [s for s in scales if s not in allowed]
    if missing:
        raise ValueError(f"the weights have no x{missing[0]} branch (they have {_listed(allowed)})")
    return tuple(sorted(scales))


def _numbers(scales: Iterable[int]) -> str:
    return ", ".join(str(s) for s in scales)


def _listed(scales: Iterable[int]) -> str:
    return ", ".join(f"x{s}" for s in scales)


def _is_numpy_int(value: object) -> bool:
    import numpy as np

    return isinstance(value, np.integer)
