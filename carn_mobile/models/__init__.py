"""CARN-family networks as plain ``nn.Module``s, with a name registry."""

from .carn import (
    CARN,
    CARNConfig,
    carn,
    carn_m,
    carn_ng,
    carn_nl,
    carn_resnet,
    config_dict,
    count_params,
    init_uniform_,
    single_scale_state,
)
from .scales import PAPER_SCALES, SUPPORTED_SCALES, check_scale, parse_scales, upsample_stages
from .zoo import build_model, list_models, register_model

__all__ = [
    "CARN",
    "CARNConfig",
    "build_model",
    "carn",
    "carn_m",
    "carn_ng",
    "carn_nl",
    "carn_resnet",
    "config_dict",
    "count_params",
    "init_uniform_",
    "list_models",
    "register_model",
    "single_scale_state",
    "PAPER_SCALES",
    "SUPPORTED_SCALES",
    "check_scale",
    "parse_scales",
    "upsample_stages",
]
