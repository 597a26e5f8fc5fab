"""Shipped weights, the authors' checkpoint layout and safe loading of user files."""

from __future__ import annotations

import pickle

import pytest
import torch

from carn_mobile.fileio import sha256_file
from carn_mobile.models import carn_m, count_params
from carn_mobile.weights import (
    WeightsError,
    get_weights,
    infer_scales,
    list_weights,
    load_model,
    read_state_dict,
    save_weights,
    verify_file,
)


def test_shipped_carn_m_is_registered_and_intact():
    entry = get_weights("carn-m")
    assert "carn-m" in list_weights()
    verify_file(entry)  # sha256 of the shipped file equals the registry's
    model = load_model("carn-m")
    assert count_params(model) == entry.meta["params"] == 414_787
    assert model.scales == (2, 3, 4)
    assert not model.training


def test_unknown_weights_name_is_a_clear_error():
    with pytest.raises(WeightsError, match="no shipped weights named 'carn'"):
        load_model("carn")


def test_authors_checkpoint_loads_strictly_and_equals_shipped(authors_carn_m):
    authors = read_state_dict(authors_carn_m)
    assert len(authors) == 58
    model = carn_m()
    model.load_state_dict(authors, strict=True)
    shipped = load_model("carn-m").state_dict()
    assert shipped.keys() == authors.keys()
    assert all(torch.equal(shipped[k], authors[k]) for k in authors)


def test_authors_single_scale_layout_loads(authors_carn_m, tmp_path):
    # The authors' single-scale checkpoints name the one branch `upsample.up.*`.
    state = read_state_dict(authors_carn_m)
    single = {
        k.replace("upsample.up4.", "upsample.up."): v
        for k, v in state.items()
        if not k.startswith(("upsample.up2.", "upsample.up3."))
    }
    path = tmp_path / "carn_m_x4.pth"
    torch.save(single, path)
    model = load_model("carn-m", path)
    assert model.scales == (4,)
    assert count_params(model) == 294_147
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), load_model("carn-m")(x, 4))


def test_infer_scales_for_x3_single_layout():
    state = carn_m(scale=3).state_dict()
    assert infer_scales(state) == (3,)
    assert infer_scales(carn_m(scale=2).state_dict()) == (2,)


def test_round_trip_through_safetensors(tmp_path):
    m = carn_m(scales=(2, 4))
    out = save_weights(m, tmp_path / "w.safetensors", arch="carn-m")
    back = load_model("carn-m", out)
    assert back.scales == (2, 4)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values(), strict=True))
    first = sha256_file(out)
    save_weights(m, out, arch="carn-m", force=True)
    assert sha256_file(out) == first  # deterministic bytes
    with pytest.raises(FileExistsError, match="--force"):
        save_weights(m, out, arch="carn-m")


def test_wrong_architecture_names_the_keys(tmp_path):
    path = tmp_path / "m.pth"  # a plain state dict: the architecture comes from --model
    torch.save(carn_m().state_dict(), path)
    with pytest.raises(WeightsError) as err:
        load_model("carn", path)
    msg = str(err.value)
    assert "missing keys" in msg and "b1.b2.body.0.weight" in msg
    assert "unexpected keys" in msg and "b1.b1.body.4.weight" in msg
    assert "shape mismatches" in msg


def test_saved_variants_carry_their_architecture(tmp_path):
    variant = carn_m(channels=16, groups=8, recursive=False, scales=(3,))
    path = save_weights(variant, tmp_path / "v.safetensors", arch="carn-m")
    back = load_model(weights=path)
    assert back.config == variant.config
    x = torch.rand(1, 3, 5, 7)
    with torch.no_grad():
        assert torch.equal(back(x), variant.eval()(x))
    with pytest.raises(WeightsError, match="holds a carn-m model, not carn; pass --model carn-m"):
        load_model("carn", path)


def test_shipped_weights_refuse_another_architecture():
    with pytest.raises(WeightsError, match="are a carn-m model, not carn-nl"):
        load_model("carn-nl", "carn-m")


def test_corrupt_safetensors_is_a_clear_error(tmp_path):
    path = save_weights(carn_m(), tmp_path / "m.safetensors", arch="carn-m")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="cannot read"):
        load_model("carn-m", path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_garbage_pth_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="cannot read"):
        read_state_dict(path)


class _Payload:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return {}


def test_pickled_code_is_never_executed(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"entry.weight": _Payload()}, fh)
    with pytest.raises(WeightsError):
        read_state_dict(path)
    assert not _Payload.ran


def test_missing_and_non_tensor_files(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "nope.safetensors")
    path = tmp_path / "numbers.pth"
    torch.save({"a": 1}, path)
    with pytest.raises(WeightsError, match="state dict of tensors"):
        read_state_dict(path)


def test_wrapped_and_ddp_prefixed_state_dicts(tmp_path):
    state = {f"module.{k}": v for k, v in carn_m().state_dict().items()}
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": state, "step": 3}, path)
    assert load_model("carn-m", path).scales == (2, 3, 4)
