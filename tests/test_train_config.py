"""carn_mobile.train.config: paper defaults, scale specs, config files and overrides (no data needed)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from carn_mobile.train import TrainConfig, build_config, parse_scale_spec, read_config_file
from carn_mobile.train.config import ConfigError, config_from_dict, merge_for_resume


def test_defaults_are_the_paper_recipe() -> None:
    cfg = TrainConfig(data=("x",))
    assert (cfg.batch_size, cfg.patch_size, cfg.steps) == (64, 64, 600_000)
    assert (cfg.lr, cfg.lr_decay_steps, cfg.lr_decay_factor) == (1e-4, 400_000, 0.5)
    assert (cfg.betas, cfg.eps, cfg.loss) == ((0.9, 0.999), 1e-8, "l1")
    assert cfg.scales == (2, 3, 4) and cfg.multi_scale and cfg.augment
    assert cfg.model == "carn" and cfg.device == "auto" and not cfg.bf16


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("multi", (2, 3, 4)), ("MULTI", (2, 3, 4)), ("4", (4,)), ("4,2", (2, 4)), (3, (3,)), ([2, 3], (2, 3)),
        ("8", (8,)),
    ],
)
def test_scale_specs(spec, expected) -> None:
    assert parse_scale_spec(spec) == expected


@pytest.mark.parametrize("spec", ["5", "x4", "", "2,2", "multi,2", "2;3", "1", [], [2, "3"], True, 2.0])
def test_bad_scale_specs_fail_clearly(spec) -> None:
    with pytest.raises(ConfigError, match="bad scale spec"):
        parse_scale_spec(spec)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps", 0, "steps must be at least 1"),
        ("batch_size", 0, "batch_size"),
        ("patch_size", 2, "patch_size"),
        ("lr", -1.0, "lr must be"),
        ("lr_decay_factor", 1.5, "lr_decay_factor"),
        ("loss", "huber", "loss must be"),
        ("device", "tpu", "device must be"),
        ("model", "srcnn", "unknown model"),
        ("model_args", {"widht": 3}, "unknown field"),
        ("model_args", {"scales": [2]}, "unknown field"),
    ],
)
def test_out_of_range_values_fail(field, value, message) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(data=("x",), **{field: value})


def test_json_and_toml_files_and_precedence(tmp_path) -> None:
    j = tmp_path / "c.json"
    values = {"model": "carn-m", "scales": "4", "steps": 10, "data": ["a"], "model_args": {"channels": 8}}
    j.write_text(json.dumps(values))
    t = tmp_path / "c.toml"
    t.write_text('model = "carn-m"\nscales = [2, 4]\nsteps = 10\ndata = ["a"]\nbetas = [0.8, 0.99]\n')
    cfg_j = build_config(read_config_file(j), {"steps": 20})  # the flag wins over the file
    assert (cfg_j.model, cfg_j.scales, cfg_j.steps, dict(cfg_j.model_args)) == ("carn-m", (4,), 20, {"channels": 8})
    cfg_t = build_config(read_config_file(t))
    assert cfg_t.scales == (2, 4) and cfg_t.betas == (0.8, 0.99)
    # Paths become absolute so a saved config works from any directory.
    assert cfg_t.data == (str((tmp_path.cwd() / "a").resolve()),)


def test_saved_config_round_trips(tmp_path) -> None:
    cfg = build_config(overrides={"data": [str(tmp_path)], "scales": "2,4", "model_args": {"channels": 8}})
    cfg.save(tmp_path / "config.json")
    assert config_from_dict(json.loads((tmp_path / "config.json").read_text())) == cfg


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"stepz": 3}', "unknown config key"),
        ('{"steps": "many"}', "steps must be an integer"),
        ('{"steps": true}', "steps must be an integer"),
        ('{"augment": 1}', "augment must be true or false"),
        ("[1, 2]", "must hold an object"),
        ("{not json", "cannot parse"),
    ],
)
def test_bad_config_files_fail_clearly(tmp_path, content, message) -> None:
    p = tmp_path / "c.json"
    p.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_config_file(p)


def test_config_file_must_be_json_or_toml(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("steps: 3\n")
    with pytest.raises(ConfigError, match=r"\.json or \.toml"):
        read_config_file(p)
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "missing.json")


def test_data_is_required() -> None:
    with pytest.raises(ConfigError, match="no training data"):
        build_config()


def test_init_with_shipped_weights_picks_their_architecture() -> None:
    assert build_config(overrides={"data": ["a"], "init": "carn-m"}).model == "carn-m"
    # An explicit model is kept (and a mismatch is reported when the weights are loaded).
    assert build_config(overrides={"data": ["a"], "init": "carn-m", "model": "carn"}).model == "carn"


def test_resume_allows_run_control_changes_only(tmp_path) -> None:
    saved = build_config(overrides={"data": [str(tmp_path)], "steps": 100})
    longer = merge_for_resume(saved, {"steps": 200, "val_every": 7, "device": "cpu"})
    assert (longer.steps, longer.val_every) == (200, 7)
    assert merge_for_resume(saved, {"lr": saved.lr}) == saved  # repeating a value is fine
    with pytest.raises(ConfigError, match="cannot change lr, seed when resuming"):
        merge_for_resume(saved, {"lr": 1e-3, "seed": 5})
    assert replace(saved, steps=3).steps == 3


EXAMPLE_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.*"))


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: p.name)
def test_example_configs_are_valid(path) -> None:
    cfg = build_config(read_config_file(path))
    assert cfg.data and cfg.steps > 0
