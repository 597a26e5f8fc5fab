"""Mult-Adds the paper's way (1280x720 output) and per-scale params."""

from __future__ import annotations

import pytest

from carn_mobile.complexity import layer_costs, mult_adds, params_for_scale
from carn_mobile.models import build_model
from carn_mobile.sizes import parse_wxh as parse_hr

# Fig. 4 / Table 3 of the paper, in G multiply-accumulates at a 1280x720 output.
PAPER_MULT_ADDS = {
    ("carn", 2): 222.8, ("carn", 3): 118.8, ("carn", 4): 90.9,
    ("carn-m", 2): 91.2, ("carn-m", 3): 46.1, ("carn-m", 4): 32.5,
}  # fmt: skip


@pytest.mark.parametrize(("name", "scale"), sorted(PAPER_MULT_ADDS))
def test_mult_adds_match_the_paper(name, scale):
    got = mult_adds(build_model(name), scale, (1280, 720)) / 1e9
    assert got == pytest.approx(PAPER_MULT_ADDS[name, scale], abs=0.05)


def test_mult_adds_scale_with_output_area():
    m = build_model("carn-m")
    assert mult_adds(m, 4, (2560, 1440)) == pytest.approx(4 * mult_adds(m, 4, (1280, 720)))


def test_per_scale_params_and_layers():
    m = build_model("carn")
    assert params_for_scale(m, 4) == 1_111_875
    rows = layer_costs(m, 4)
    assert [r.name for r in rows][:2] == ["entry", "b1"]
    assert sum(r.params for r in rows) == 1_111_875
    assert all(r.mult_adds > 0 for r in rows)


@pytest.mark.parametrize("bad", ["1280", "axb", "0x720", "1280x-1", ""])
def test_parse_hr_rejects_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_hr(bad)


def test_parse_hr():
    assert parse_hr("1280x720") == (1280, 720)
    assert parse_hr("640X360") == (640, 360)
