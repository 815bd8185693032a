"""MobileNetV2 early-exit model: reference geometry, QAT forward/backward at 4 and 8 bit (brevitas),
exit selection at a threshold, exact exit statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dalp_moo.model.mobilenetv2_ee import (
    ExitHead,
    MobileNetV2Backbone,
    ResidualAdd,
    build_network,
    count_macs,
    exit_geometry,
    select_exits,
)
from dalp_moo.precision import quant
from dalp_moo.training.early_exit import exit_statistics, fit_threshold


def test_reference_backbone_geometry():
    backbone = MobileNetV2Backbone()
    assert sum(p.numel() for p in backbone.parameters()) == pytest.approx(1.39e6, rel=0.005)
    assert count_macs(backbone, torch.zeros(1, 3, 32, 32)) == pytest.approx(195.33e6, rel=0.001)
    geo = exit_geometry()
    assert [(g.letter, g.channels, g.size) for g in (geo[0], geo[5], geo[9], geo[10])] == [
        ("A", 16, 32), ("F", 64, 16), ("J", 160, 8), ("K", 320, 8)]
    # the two-layer head on the final exit costs ~13 M MACs (8C hidden)
    assert count_macs(ExitHead(320, 8, 10, "mlp"), torch.zeros(1, 320, 8, 8)) == pytest.approx(13.1e6, rel=0.01)
    adds = [m for m in backbone.modules() if isinstance(m, ResidualAdd)]
    assert len(adds) == 5 and all(m.cost_op == "add" for m in adds)
    assert exit_geometry(0.5)[10].channels == 160


@pytest.mark.parametrize("bits", [4, 8])
def test_qat_forward_backward(bits):
    torch.manual_seed(0)
    net = build_network([2, 10], ["linear", "mlp"], 5, width=0.25, backbone_bits=bits, exit_bits=bits)
    counts = quant.quantised_layers(net)
    assert counts["weight_layers"] > 30 and counts["activation_quantisers"] > 30
    x = torch.randn(4, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    net.train()
    logits = net(x)
    assert [t.shape for t in logits] == [(4, 5), (4, 5)]
    loss = sum(F.cross_entropy(z, y) for z in logits)
    loss.backward()
    conv = net.backbone.stem[0]
    assert isinstance(conv, torch.nn.Conv2d) and conv.weight.grad is not None
    assert torch.isfinite(conv.weight.grad).all() and conv.weight.grad.abs().sum() > 0
    scales = [p for n, p in net.named_parameters() if "scaling_impl" in n and p.grad is not None]
    assert scales, "learned quantisation scales receive gradients"
    opt.step()
    # integer grids: weights use at most 2^bits - 1 levels per channel, activations 2^bits
    assert 2 < quant.weight_levels(conv) <= 2 ** bits - 1
    net.eval()
    with torch.no_grad():
        feats = net.backbone(x)
    act = net.backbone.stem[2](net.backbone.stem[1](conv(x)))
    assert torch.unique(act).numel() <= 2 ** bits
    assert all(torch.isfinite(f).all() for f in feats)


def test_full_precision_layers_are_plain_torch():
    assert type(quant.conv2d(3, 8, 3, bits=32)) is torch.nn.Conv2d
    assert type(quant.linear(8, 2, bits=16)) is torch.nn.Linear
    assert isinstance(quant.conv2d(3, 8, 3, bits=8), torch.nn.Conv2d)  # brevitas subclass
    with pytest.raises(Exception, match="12 bits"):
        quant.check_bits(12)


def test_fp16_deployment_of_a_head():
    torch.manual_seed(0)
    head = ExitHead(16, 8, 3, "mlp").eval()
    x = torch.randn(5, 16, 8, 8) * 3
    deployed = quant.fp16_deploy(head, "ieee", x)
    out, ref = deployed(x), head(x)
    assert torch.equal(out, out.half().float())  # FP16 values
    assert torch.allclose(out, ref, atol=2e-2, rtol=1e-2)


def test_exit_selection_at_threshold():
    conf = torch.tensor([[0.95, 0.40, 0.70, 0.10],
                         [0.50, 0.92, 0.80, 0.20],
                         [0.60, 0.30, 0.99, 0.30]])
    assert select_exits(conf, 0.9).tolist() == [0, 1, 2, 2]
    assert select_exits(conf, 0.7).tolist() == [0, 1, 0, 2]
    assert select_exits(conf, 0.999).tolist() == [2, 2, 2, 2]


def test_exit_statistics_hand_example():
    # 4 samples, 2 exits, 2 classes; labels 0, 1, 1, 0
    early = np.array([[0.95, 0.05], [0.60, 0.40], [0.08, 0.92], [0.25, 0.75]], np.float32)
    final = np.array([[0.80, 0.20], [0.20, 0.80], [0.40, 0.60], [0.55, 0.45]], np.float32)
    labels = np.array([0, 1, 1, 0])
    st = exit_statistics([early, final], labels, 0.9)
    # samples 0 and 2 leave early (correct), 1 and 3 at the final exit (correct)
    assert st.exit_fractions == (0.5, 0.5) and st.exit_accuracy == (1.0, 1.0) and st.accuracy == 1.0
    assert st.head_accuracy == (0.5, 1.0) and st.accuracy_static == 1.0
    low = exit_statistics([early, final], labels, 0.7)
    # sample 3 now leaves early too, and the early head gets it wrong
    assert low.exit_fractions == (0.75, 0.25) and low.exit_accuracy == (2 / 3, 1.0) and low.accuracy == 0.75
    # a threshold nobody reaches: everything goes to the final exit
    none = exit_statistics([early, final], labels, 0.99)
    assert none.exit_fractions == (0.0, 1.0) and none.exit_accuracy[0] is None
    # the lowest threshold keeping the accuracy
    assert fit_threshold([early, final], labels, [0.5, 0.6, 0.7, 0.9], 1.0) == 0.9
    assert fit_threshold([early, final], labels, [0.5, 0.6, 0.7, 0.9], 0.75) == 0.7
    assert fit_threshold([early, final], labels, [0.5, 0.9], 1.01) is None
