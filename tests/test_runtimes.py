"""The I/O contract, shape specs, runner registry and optional-dependency errors (no exports)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from carn_mobile.export import get_target, runners_for_target, target_for_path, usable_runners
from carn_mobile.runtimes import (
    INPUT_NAME,
    OUTPUT_NAME,
    MissingDependencyError,
    ShapeSpec,
    as_model_input,
    contract_json,
    get_runner,
    list_runners,
    parse_shape,
    require,
)
from carn_mobile.runtimes import optional as optional_mod
from carn_mobile.runtimes.quiet import captured_output

# --- shape specs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, kind, bounds",
    [
        ("dynamic", "dynamic", None),
        ("dynamic:256", "dynamic", (8, 256)),
        ("dynamic:16-128", "dynamic", (16, 128)),
        ("64x96", "fixed", (64, 96)),
        (" 64 X 96 ", "fixed", (64, 96)),
        ("enumerated:64x64,128x96", "enumerated", (64, 128)),
    ],
)
def test_parse_shape_accepts_the_documented_forms(text: str, kind: str, bounds) -> None:
    spec = parse_shape(text)
    assert spec.kind == kind
    if bounds is None:
        assert spec.max_side is None and spec.with_default_max(512).bounds == (8, 512)
    else:
        assert spec.bounds == bounds


def test_fixed_and_enumerated_sizes_are_height_first() -> None:
    assert parse_shape("64x96").sizes == ((64, 96),)
    assert parse_shape("enumerated:32x48,48x32").sizes == ((32, 48), (48, 32))


@pytest.mark.parametrize(
    "text",
    ["", "wide", "64", "64x", "x64", "0x64", "64x5000", "enumerated:64x64", "enumerated:", "enumerated:8x8,8x8",
     "dynamic:1", "dynamic:64-32", "dynamic:9000", "dynamic:abc"],
)
def test_parse_shape_rejects_unusable_specs_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_shape(text)
    message = str(err.value)
    assert "unusable shape spec" in message and "enumerated:HxW" in message


def test_shape_spec_json_round_trip_and_tags() -> None:
    for spec in (ShapeSpec("dynamic", max_side=300), parse_shape("17x23"), parse_shape("enumerated:8x8,16x24")):
        assert ShapeSpec.from_json(spec.to_json()) == spec
    assert ShapeSpec().tag() == "" and parse_shape("17x23").tag() == "17x23"
    assert parse_shape("enumerated:8x8,16x24,32x32").tag() == "enum3"


def test_shape_spec_accepts() -> None:
    dyn = ShapeSpec("dynamic", min_side=8, max_side=64)
    assert dyn.accepts((8, 64)) and not dyn.accepts((7, 20)) and not dyn.accepts((20, 65))
    enum = parse_shape("enumerated:8x8,16x24")
    assert enum.accepts((16, 24)) and not enum.accepts((24, 16))


def test_dynamic_without_maximum_has_no_bounds_yet() -> None:
    with pytest.raises(ValueError, match="maximum"):
        _ = ShapeSpec().bounds
    assert ShapeSpec(max_side=100).with_default_max(512).max_side == 100  # a user's maximum wins


# --- contract -------------------------------------------------------------------------------


def test_contract_json_states_the_tensor_contract() -> None:
    c = contract_json(3, ShapeSpec(max_side=64))
    assert c["input"]["name"] == INPUT_NAME == "lr" and c["output"]["name"] == OUTPUT_NAME == "sr"
    assert c["input"]["layout"] == "NCHW" and c["input"]["dtype"] == "float32" and c["input"]["range"] == [0.0, 1.0]
    assert c["output"]["clamped_in_graph"] is True and c["output"]["shape"] == [1, 3, "3*H", "3*W"]
    image = contract_json(3, ShapeSpec(max_side=64), image_io=True)
    assert image["input"]["type"] == "image" and image["output"]["type"] == "image"


def test_as_model_input_checks_shape_and_makes_contiguous_float32() -> None:
    view = np.zeros((1, 8, 9, 3), dtype=np.float64).transpose(0, 3, 1, 2)  # (1, 3, 8, 9), strided
    out = as_model_input(view)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"] and out.shape == (1, 3, 8, 9)
    for bad in (np.zeros((3, 8, 8)), np.zeros((2, 3, 8, 8)), np.zeros((1, 4, 8, 8))):
        with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
            as_model_input(bad)


# --- registry -------------------------------------------------------------------------------


def test_registries_list_every_module_in_their_folders() -> None:
    # The registries import their modules by name: a new or renamed file must be listed there.
    from pathlib import Path

    from carn_mobile.export import TARGET_MODULES, list_targets
    from carn_mobile.runtimes import RUNNER_MODULES

    package = Path(__file__).resolve().parents[1] / "carn_mobile"
    assert sorted(p.stem for p in (package / "export").glob("target_*.py")) == sorted(TARGET_MODULES)
    assert sorted(p.stem for p in (package / "runtimes").glob("runner_*.py")) == sorted(RUNNER_MODULES)
    for target in map(get_target, list_targets()):
        assert target.runners and all(r in list_runners() for r in target.runners), target.name


def first_runner(path: str) -> str:
    """The runner the one rule picks first for ``path`` here (first available of its target's)."""
    usable, why_not = usable_runners(target_for_path(path))
    assert usable, why_not
    return usable[0].name


def test_every_target_has_a_runner_found_by_suffix() -> None:
    import sys

    assert {"onnxruntime", "lite-interpreter", "executorch", "coreml-predict"} <= set(list_runners())
    assert first_runner("a/b/model.onnx") == "onnxruntime"
    assert first_runner("m.PTL") == "lite-interpreter"
    assert first_runner("m.pte") == "executorch"
    # Off macOS Core ML cannot predict: the rule skips to the NumPy executor instead of raising.
    assert first_runner("m.mlpackage") == ("coreml-predict" if sys.platform == "darwin" else "coreml-reference")
    assert [r.name for r in runners_for_target("onnx")] == ["onnxruntime"]
    assert first_runner("m.tflite") == "litert"
    assert first_runner("m.ort") == "onnxruntime"
    with pytest.raises(ValueError, match="unknown suffix"):
        target_for_path("model.tfl")
    with pytest.raises(ValueError, match="known runners"):
        get_runner("tflite")


def test_coreml_runner_says_plainly_why_it_cannot_run_off_macos() -> None:
    import sys

    reason = get_runner("coreml-predict").unavailable_reason()
    if sys.platform == "darwin":
        assert reason is None
    else:
        assert reason is not None and "macOS" in reason


# --- optional dependencies ------------------------------------------------------------------


def test_require_names_the_extra_when_a_module_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, *args, **kwargs):
        if name.startswith("executorch"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(optional_mod.importlib, "import_module", fake)
    with pytest.raises(MissingDependencyError) as err:
        require("executorch.runtime", "executorch", "running ExecuTorch artifacts")
    assert 'pip install "carn-mobile[executorch]"' in str(err.value)
    assert isinstance(err.value, ImportError)  # the CLI maps ImportError to exit code 2
    assert require("json", "export", "a test").dumps([1]) == "[1]"


def test_captured_output_hides_native_output_and_replays_it_on_failure(capfd: pytest.CaptureFixture) -> None:
    import os

    with captured_output():
        os.write(1, b"chatter on fd 1\n")
        os.write(2, b"chatter on fd 2\n")
    assert "chatter" not in capfd.readouterr().out + capfd.readouterr().err
    with pytest.raises(RuntimeError):
        with captured_output():
            os.write(2, b"clue for debugging\n")
            raise RuntimeError("boom")
    assert "clue for debugging" in capfd.readouterr().err
