"""DDS-U-Net (spec/dds_unet.yaml), tcc's light U-Net: DDSNet's dense blocks as the encoder, whose layers are DDSNet's
own (the same block files), a dense [classes, H, W] output at the input's size, and its size against `unet`."""

from __future__ import annotations

import pytest

from tcc.spec.loader import load_spec
from tests.helpers import REPO


def test_the_encoder_is_ddsnets_and_the_output_dense():
    spec = load_spec(REPO / "spec" / "dds_unet.yaml")
    g = spec.graph
    assert list(g.shape(g.output)) == [2, 256, 256]
    ops = {n.name: n.op for n in g.nodes.values()}
    # DDSNet's dense layer: depthwise 3x3 then pointwise to `growth` channels, each reading every earlier layer
    assert ops["dense1.layer0.dw.conv"] == "conv2d" and g.nodes["dense1.layer0.dw.conv"].attrs["groups"] == 16
    assert list(g.nodes["dense4.layer3.pw.conv"].shape) == [16, 16, 16]  # growth 16 at 1/16 of 256
    assert list(g.nodes["up0.upsample"].shape)[1:] == [256, 256]
    ddsnet = load_spec(REPO / "spec" / "ddsnet.yaml").graph
    layer = [n.op for n in ddsnet.nodes.values() if n.name.startswith("dense1.layer0.")]
    assert [n.op for n in g.nodes.values() if n.name.startswith("dense1.layer0.")] == layer


@pytest.mark.parametrize(("overrides", "params", "macs"), [({}, 63_098, 353_931_264)])
def test_sized_for_a_cortex_a7_against_unet(overrides, params, macs):
    light = load_spec(REPO / "spec" / "dds_unet.yaml", overrides).graph
    unet = load_spec(REPO / "spec" / "unet.yaml", {"base": 16}).graph
    assert (light.param_count, light.macs) == (params, macs)
    assert unet.param_count > 30 * light.param_count and unet.macs > 8 * light.macs
