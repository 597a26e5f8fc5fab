"""The exact graph rewrites: each computes what the model computes, alone and together, and the
export pipeline applies them, records them and checks parity against the unmodified model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import quick_parity_settings
from torch import nn

from carn_mobile.export import DEFAULT_REWRITES, REWRITES, export_model, optimized_module, parse_rewrites
from carn_mobile.export.depth_to_space import with_dcr_upsampler
from carn_mobile.export.rewrites import PartwiseFusion, ShuffledExit, shuffled_exit_weight
from carn_mobile.export.wrapper import count_conv_calls, per_scale_module
from carn_mobile.models import build_model
from carn_mobile.models.blocks import MeanShift

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _module(arch: str, scale: int, seed: int = 0):
    torch.manual_seed(seed)
    net = build_model(arch, channels=16, groups=4 if arch == "carn-m" else 1).eval()
    return per_scale_module(net, scale)


def _max_diff(a: nn.Module, b: nn.Module, h: int = 13, w: int = 19) -> float:
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(1))  # odd sides: borders matter
    with torch.no_grad():
        return float((a.net(x) - b.net(x)).abs().max())  # unclamped, so no error hides in the clamp


@pytest.mark.parametrize("arch", ["carn", "carn-m"])
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("names", [["exit-before-shuffle", n] if n == "pad-exit" else [n] for n in REWRITES]
                         + [list(REWRITES)], ids=lambda n: "+".join(n))
def test_each_rewrite_computes_what_the_model_computes(arch, scale, names):
    plain = _module(arch, scale)
    rewritten, applied = optimized_module(plain, names)
    # Every rewrite finds its sites (pad-exit on the shuffled exit; CARN has no grouped convs).
    assert applied == [n for n in names if not (n == "dense-groups" and arch == "carn")]
    assert _max_diff(plain, rewritten) < 1e-5


def test_the_int8_rewrites_pad_the_exit_and_densify_narrow_groups_only():
    from carn_mobile.export.rewrites import PaddedExit

    rewritten, _ = optimized_module(_module("carn-m", 3), list(REWRITES))
    exit_conv = rewritten.net.exit
    assert isinstance(exit_conv, PaddedExit) and exit_conv.conv.out_channels == 32 and exit_conv.channels == 27
    grouped = [m for m in rewritten.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert grouped and all(m.out_channels // m.groups >= 32 for m in grouped)  # the upsampler's stay grouped
    plain = _module("carn-m", 3)
    assert sum(isinstance(m, nn.Conv2d) and m.groups > 1 for m in plain.modules()) > len(grouped)


def test_rewrites_change_the_graph_and_leave_the_input_alone():
    plain = _module("carn-m", 4)
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    rewritten, _ = optimized_module(plain)
    assert all(torch.equal(before[k], v) for k, v in plain.state_dict().items())
    net = rewritten.net
    assert isinstance(net.add_mean, nn.Identity) and isinstance(plain.net.add_mean, MeanShift)
    assert isinstance(net.exit, ShuffledExit) and isinstance(net.upsample.up.body[-1], nn.Identity)
    fusions = [m for m in net.modules() if isinstance(m, PartwiseFusion)]
    assert len(fusions) == 12  # 3 local in each of 3 cascading blocks + 3 global
    assert not any(isinstance(m, nn.PixelShuffle) for m in plain.net.exit.modules())
    # Sum of parts: no torch.cat left in the body; one conv per part instead of one per fusion.
    assert count_conv_calls(rewritten) > count_conv_calls(plain)


@pytest.mark.parametrize("block", [2, 3])
def test_shuffled_exit_weight_matches_conv_after_shuffle(block):
    torch.manual_seed(block)
    conv = nn.Conv2d(5, 3, 3, 1, 1)
    moved = nn.Conv2d(5 * block * block, 3 * block * block, 3, 1, 1)
    with torch.no_grad():
        moved.weight.copy_(shuffled_exit_weight(conv.weight, block))
        moved.bias.copy_(conv.bias.repeat_interleave(block * block))
    x = torch.randn(1, 5 * block * block, 7, 6)
    with torch.no_grad():
        want = conv(nn.functional.pixel_shuffle(x, block))
        got = nn.functional.pixel_shuffle(moved(x), block)
    assert float((want - got).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="3x3"):
        shuffled_exit_weight(torch.zeros(3, 5, 1, 1), block)


@pytest.mark.parametrize("scale", [2, 4])
def test_dcr_forms_take_the_rewritten_graph(scale):
    plain = _module("carn-m", scale)
    rewritten, _ = optimized_module(plain)
    assert _max_diff(plain, with_dcr_upsampler(rewritten)) < 1e-5


def test_parse_rewrites():
    assert parse_rewrites(None) == DEFAULT_REWRITES == ("fold-output-mean", "cascade-as-sum", "exit-before-shuffle")
    assert set(REWRITES) - set(DEFAULT_REWRITES) == {"pad-exit", "dense-groups"}  # int8's (the recipe adds them)
    assert parse_rewrites("default") == DEFAULT_REWRITES
    assert parse_rewrites("none") == parse_rewrites(()) == ()
    assert parse_rewrites("exit-before-shuffle,fold-output-mean") == ("fold-output-mean", "exit-before-shuffle")
    with pytest.raises(ValueError, match="unknown rewrite 'fuse-all'; known rewrites: fold-output-mean"):
        parse_rewrites("fuse-all")


def test_export_records_rewrites_and_checks_the_plain_model(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx

    from carn_mobile.cli.parity import main as parity_main

    with quick_parity_settings():
        (opt,) = export_model("carn-m", targets=["onnx"], scales=[2], out_dir=tmp_path / "opt")
        (plain,) = export_model("carn-m", targets=["onnx"], scales=[2], out_dir=tmp_path / "plain", rewrites=())
    assert opt.manifest["export"]["rewrites"] == list(DEFAULT_REWRITES)
    assert plain.manifest["export"]["rewrites"] == []
    assert opt.report.passed and plain.report.passed and opt.report.max_abs < 1e-4
    ops = [[n.op_type for n in onnx.load(str(r.artifact)).graph.node] for r in (opt, plain)]
    assert ops[0].count("Concat") == 0 < ops[1].count("Concat")  # cascade-as-sum: no concatenation
    # exit before the shuffle, add-mean folded; the plain graph has exit conv + add-mean conv after it.
    assert ops[0][-2:] == ["DepthToSpace", "Clip"] and ops[1][-4:] == ["DepthToSpace", "Conv", "Conv", "Clip"]
    # carn-parity rebuilds what was exported from the manifest and checks it again.
    for result in (opt, plain):
        with pytest.raises(SystemExit) as done:
            parity_main([str(result.artifact)])
        assert done.value.code == 0
    # A manifest naming a rewrite this version does not know is refused in one line.
    manifest = json.loads(opt.job.manifest.read_text())
    manifest["export"]["rewrites"] = ["fuse-everything"]
    opt.job.manifest.write_text(json.dumps(manifest))
    with pytest.raises(SystemExit) as done:
        parity_main([str(opt.artifact)])
    assert done.value.code == 2


def test_export_cli_no_optimize_and_bad_rewrites(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from carn_mobile.cli.export import main as export_main

    with pytest.raises(SystemExit) as done:
        export_main(["--target", "onnx", "--scale", "2", "--rewrites", "fold-everything", "--out", str(tmp_path)])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "unknown rewrite 'fold-everything'" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())
    with quick_parity_settings(), pytest.raises(SystemExit) as done:
        export_main(["--target", "onnx", "--scale", "2", "--no-optimize", "--out", str(tmp_path)])
    assert done.value.code == 0
    assert "rewrites: none (plain graph)" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "carn-m_x2_fp32.onnx.json").read_text())
    assert manifest["export"]["rewrites"] == []


def test_torch_backend_runs_the_rewritten_graph_in_channels_last():
    from carn_mobile.upscaling.backends import TorchBackend

    torch.manual_seed(0)
    net = build_model("carn-m", channels=16, groups=4).eval()
    fast, plain = TorchBackend(net, 4), TorchBackend(net, 4, optimize=False)
    assert fast.rewrites == list(DEFAULT_REWRITES) and plain.rewrites == []
    assert fast.memory_format is torch.channels_last
    lr = np.random.default_rng(0).random((1, 3, 11, 14), dtype=np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(lr), 4).numpy()  # unclamped, as the backend contract says
    got = fast.run(lr)
    assert got.flags["C_CONTIGUOUS"] and got.shape == (1, 3, 44, 56)
    assert np.abs(got - want).max() < 1e-5 and np.abs(plain.run(lr) - want).max() < 1e-6


def test_executorch_threads_follow_torch():
    pytest.importorskip("executorch.runtime")
    from carn_mobile.runtimes.runner_executorch import follow_torch_threads

    torch.set_num_threads(1)  # the fixture restores it
    assert follow_torch_threads() == 1
