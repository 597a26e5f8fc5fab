"""Initial weights for fine-tuning (``--init``): shipped weights by name, or a checkpoint file.

Scales are matched between the file and the model being trained: a single-scale model
takes the body and its own branch from a multi-scale file (e.g. CARN-M x4 from the
shipped x2/x3/x4 weights), and branches the model does not have are dropped. Everything
else must fit exactly.
"""

from __future__ import annotations

import re

from ..models import CARN, single_scale_state
from ..weights import infer_scales, load_state_into, read_state_dict, resolve_weights


def load_init_weights(model: CARN, init: str) -> str:
    """Load ``init`` into ``model`` (strict after scale matching); returns a description of the source."""
    ref = resolve_weights(None, init)
    source = ref.label if ref.entry else str(ref.path)
    state = read_state_dict(ref.path)
    have = infer_scales(state)
    want = tuple(model.scales)
    missing = [s for s in want if s not in have]
    if missing:
        raise ValueError(
            f"--init {init}: the weights have scales {list(have)} but the model trains {list(want)}; "
            f"x{missing[0]} has no upsampler to start from (choose --scale among {list(have)})"
        )
    if any(_branch(k) not in (None, "up") for k in state):  # a multi-scale file: up2, up3, ...
        if model.config.multi_scale:
            keep = {f"up{s}" for s in want}
            state = {k: v for k, v in state.items() if _branch(k) is None or _branch(k) in keep}
        else:
            state = single_scale_state(state, want[0])  # the single-scale model names its branch "up"
    load_state_into(model, state, source)
    return source


def _branch(key: str) -> str | None:
    """``up3`` for ``upsample.up3.body.0.weight``, ``up`` for a single-scale branch, else None."""
    m = re.match(r"upsample\.(up\d*)\.", key)
    return m.group(1) if m else None
