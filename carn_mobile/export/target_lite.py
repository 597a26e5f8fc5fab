"""TorchScript-lite: a traced per-scale module saved for PyTorch's lite interpreter (``.ptl``).

``optimize_for_mobile`` is applied when the PyTorch build has XNNPACK; when it has not, the
module is saved unoptimised and the manifest and console say so.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..runtimes.quiet import captured_output
from .base import ExportOutcome, ExportRequest, Target
from .targets import register_target
from .wrapper import SuperResolver


def _optimize_for_mobile(module: torch.jit.ScriptModule) -> tuple[torch.jit.ScriptModule, str | None]:
    """(optimised module, None) or (the module unchanged, why optimisation was skipped)."""
    from torch.utils.mobile_optimizer import optimize_for_mobile

    try:
        return optimize_for_mobile(module), None
    except RuntimeError as exc:
        text = str(exc)
        if "XNNPACK" in text:
            return module, "optimize_for_mobile skipped: this PyTorch build has no XNNPACK"
        return module, f"optimize_for_mobile skipped: {text.strip().splitlines()[0]}"


@register_target
class LiteTarget(Target):
    name = "torchscript-lite"
    suffix = ".ptl"
    runners = ("lite-interpreter",)
    backend = "torchscript-lite"
    rank = 30
    description = "TorchScript for PyTorch Mobile's lite interpreter (deprecated upstream; prefer executorch)"
    requires = ()
    precisions = ("fp32",)
    precision_note = (
        "the lite interpreter has no fast float16 CPU kernels: a float16 graph ran about 30x slower "
        "than float32 on a desktop CPU (2.7 s vs 0.08 s, 32x48 input); use onnx, executorch or coreml for fp16"
    )

    def export(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        with captured_output(), torch.no_grad():
            traced = torch.jit.trace(module, request.example_input())
            frozen = torch.jit.freeze(traced)
            optimised, skipped = _optimize_for_mobile(frozen)
            extra = {"carn_mobile.json": json.dumps(request.metadata, sort_keys=True)}
            optimised._save_for_lite_interpreter(str(out), _extra_files=extra)
        notes = [skipped] if skipped else ["optimize_for_mobile applied"]
        notes.append("PyTorch's lite interpreter is deprecated upstream in favour of ExecuTorch")
        return ExportOutcome(notes=notes, details={"optimize_for_mobile": skipped is None})

    def versions(self) -> dict[str, str | None]:
        return {"torch": torch.__version__}
