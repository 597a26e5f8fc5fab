"""LiteRT builtins the converter does not emit by itself: ``SPLIT`` and ``DEPTH_TO_SPACE`` (NHWC).

litert-torch lowers ``PixelShuffle`` through reshapes and transposes in the body of the graph,
and slices channels with size-fixed ``SLICE`` ops (which break ``resize_tensor_input``). These two
torch custom ops carry an NHWC tensor straight to the LiteRT builtin: the converter passes a
StableHLO ``custom_call`` named ``tfl.<op>`` through as that op (litert-torch's own ``torch.ops.tfl``
ops use the same path). Their eager bodies compute the same thing in PyTorch, so the module
still runs (and is checked) before conversion.

Importing this module registers the ops and their lowerings; it needs ``litert_torch``.
"""

from __future__ import annotations

import torch

from .depth_to_space import DCROps

_NAMESPACE = "carn_litert"


@torch.library.custom_op(f"{_NAMESPACE}::depth_to_space", mutates_args=())
def depth_to_space_nhwc(x: torch.Tensor, block: int) -> torch.Tensor:
    """LiteRT ``DEPTH_TO_SPACE`` (DCR by definition) of an NHWC tensor."""
    n, h, w, c = x.shape
    r = block
    y = x.reshape(n, h, w, r, r, c // (r * r)).permute(0, 1, 3, 2, 4, 5)
    return y.reshape(n, h * r, w * r, c // (r * r)).contiguous()


@depth_to_space_nhwc.register_fake
def _depth_to_space_shape(x: torch.Tensor, block: int) -> torch.Tensor:
    n, h, w, c = x.shape
    return x.new_empty((n, h * block, w * block, c // (block * block)))


@torch.library.custom_op(f"{_NAMESPACE}::split_channels", mutates_args=())
def split_channels_nhwc(x: torch.Tensor, groups: int) -> list[torch.Tensor]:
    """LiteRT ``SPLIT`` of an NHWC tensor into ``groups`` equal channel blocks (any H, W)."""
    return [p.contiguous() for p in x.chunk(groups, dim=3)]


@split_channels_nhwc.register_fake
def _split_shape(x: torch.Tensor, groups: int) -> list[torch.Tensor]:
    n, h, w, c = x.shape
    return [x.new_empty((n, h, w, c // groups)) for _ in range(groups)]


class LiteRTDCROps(DCROps):
    """DCR stages as LiteRT builtins; the permutes around them cancel against the converter's own
    NCHW->NHWC transposes, so the converted graph has none inside its body."""

    def split(self, x: torch.Tensor, groups: int) -> list[torch.Tensor]:
        parts = torch.ops.carn_litert.split_channels(x.permute(0, 2, 3, 1), groups)
        return [p.permute(0, 3, 1, 2) for p in parts]

    def depth_to_space(self, parts: list[torch.Tensor], block: int) -> torch.Tensor:
        outs = [torch.ops.carn_litert.depth_to_space(p.permute(0, 2, 3, 1), block) for p in parts]
        y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=3)
        return y.permute(0, 3, 1, 2)


def _register_lowerings() -> None:
    # litert-torch's lowering registry and its MLIR bindings are internal API, which is why the
    # litert extra pins litert-torch to the tested minor version.
    from litert_converter.mlir import ir
    from litert_converter.mlir.dialects import stablehlo
    from litert_torch.backend.lowerings import registry
    from litert_torch.backend.lowerings import utils as lowering_utils

    def tfl_op(lctx, name: str, operands: list, attributes: dict):
        return stablehlo.custom_call(
            result=lowering_utils.node_meta_to_ir_types(lctx.node),
            inputs=operands,
            call_target_name=ir.StringAttr.get(name),
            has_side_effect=ir.BoolAttr.get(False),
            backend_config=ir.StringAttr.get(str(ir.DictAttr.get(attributes))),
        )

    def i32(value: int):
        return ir.IntegerAttr.get(ir.IntegerType.get_signless(32), value)

    @registry.lower(torch.ops.carn_litert.depth_to_space.default)
    def _lower_depth_to_space(lctx, x, block: int):
        return tfl_op(lctx, "tfl.depth_to_space", [x], {"block_size": i32(block)})

    @registry.lower(torch.ops.carn_litert.split_channels.default)
    def _lower_split(lctx, x, groups: int):
        import numpy as np

        axis = lowering_utils.numpy_array_constant(np.array(3, dtype=np.int32))
        return tfl_op(lctx, "tfl.split", [axis, x], {"num_splits": i32(groups)})


_register_lowerings()
