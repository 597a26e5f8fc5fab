"""Training CARN-family networks with the paper's recipe (Sec. 4.2): ``carn-train`` and its Python API.

Modules, one job each:

* :mod:`.config` - :class:`TrainConfig` (paper defaults), config files, CLI overrides;
* :mod:`.patches` - training images, cached bicubic LR, random patch batches;
* :mod:`.packed` - the images as device tensors, patches cut in one batched gather;
* :mod:`.schedule` - learning-rate schedules and the ``--time-budget`` plan;
* :mod:`.validate` - validation PSNR with the ``carn-eval`` protocol;
* :mod:`.state` - checkpoints (safetensors model + weights-only training state);
* :mod:`.distributed` - device choice and torchrun / DDP setup;
* :mod:`.finetune` - initial weights for fine-tuning;
* :mod:`.history` - CSV/JSON log and the PNG of the curves;
* :mod:`.progress` - progress bar and status lines;
* :mod:`.rundir` - the run folder's layout and rules;
* :mod:`.loop` - the training loop, :func:`train`.

Example::

    from carn_mobile.train import build_config, train

    cfg = build_config(overrides={"data": ["T91"], "val": ["Set5"], "scales": "multi", "steps": 1000})
    result = train(cfg, "runs/carn")
"""

from .config import (
    MULTI_SCALES,
    RESUMABLE_FIELDS,
    ConfigError,
    TrainConfig,
    build_config,
    config_from_dict,
    parse_scale_spec,
    read_config_file,
)
from .distributed import DeviceError, DistContext, resolve_device
from .finetune import load_init_weights
from .history import History
from .loop import TrainingError, TrainResult, build_train_model, load_run_config, resume_config, train
from .patches import DataError, PatchBatches, TrainImages, scale_for_step
from .rundir import RunDir, RunDirError
from .state import CheckpointError, list_checkpoints, load_checkpoint
from .validate import Validator

__all__ = [
    "MULTI_SCALES",
    "RESUMABLE_FIELDS",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "DistContext",
    "History",
    "PatchBatches",
    "RunDir",
    "RunDirError",
    "TrainConfig",
    "TrainImages",
    "TrainResult",
    "TrainingError",
    "Validator",
    "build_config",
    "build_train_model",
    "config_from_dict",
    "list_checkpoints",
    "load_checkpoint",
    "load_init_weights",
    "load_run_config",
    "parse_scale_spec",
    "read_config_file",
    "resolve_device",
    "resume_config",
    "scale_for_step",
    "train",
]
