"""Deployment-aligned training: straight-through FP16 forward, overflow handling, batch-norm
folding on the fly, regimes end to end, diagnostics."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dalp_moo.config import DataConfig, SpaceConfig, TrainConfig
from dalp_moo.errors import ConfigError
from dalp_moo.model import InputNorm, build_model
from dalp_moo.precision import (
    aligned_context,
    aligned_training,
    constrain,
    deploy_fp16,
    diagnose,
    format_diagnostics,
    gap_recovered,
    get_profile,
    run_regimes,
    ste_round_fp16,
)
from dalp_moo.space import SearchSpace
from dalp_moo.training import evaluate_segmentation, focal_loss, train_model


def small_unet(seed: int = 0, blocks: tuple[str, ...] | None = None) -> nn.Module:
    space = SearchSpace(SpaceConfig())
    genome = space.sample(1, np.random.default_rng(seed))[0]
    torch.manual_seed(seed)
    return build_model(space.decode(genome), 4, 2, InputNorm([0.0] * 4, [1 / 1000.0] * 4))


def test_ste_gradient_is_identity_in_range() -> None:
    x = (torch.randn(100) * 10).requires_grad_(True)
    y = ste_round_fp16(x, 1.0)
    assert torch.equal(y, x.detach().half().float())
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_ste_overflow_is_finite_and_pushes_back() -> None:
    x = torch.tensor([1.0, 70000.0, -80000.0, 100.0], requires_grad=True)
    y = ste_round_fp16(x, 1.0, overflow_push=1.0)
    assert torch.isfinite(y).all() and y[1] == 65504 and y[2] == -65504
    (y * torch.tensor([1.0, -5.0, 5.0, 1.0])).sum().backward()
    g = x.grad
    assert torch.isfinite(g).all()
    assert g[0] == 1 and g[3] == 1
    # task gradient dropped on overflowed elements, restoring push: descent (x - lr*g) shrinks |x|
    assert g[1] > 0 and g[2] < 0
    # in the scaled domain (shift 4): 5000 * 16 = 80000 overflows there
    xs = torch.tensor([5000.0, 1000.0], requires_grad=True)
    ys = ste_round_fp16(xs, 16.0, overflow_push=0.0)
    assert ys[0] == 65504 / 16 and ys[1] == 1000
    ys.sum().backward()
    assert xs.grad.tolist() == [0.0, 1.0]


def test_aligned_forward_equals_deployed_and_model_is_fp32_outside() -> None:
    model = small_unet(1).eval()
    x = torch.round(torch.rand(2, 4, 32, 32) * 4095)
    with torch.no_grad():
        ref = model(x)
        deployed = deploy_fp16(model, "myriadx")(x)
        with aligned_training(model, "myriadx"):
            aligned = model(x)
        after = model(x)
    # identical up to 1-ulp effects of FP16 subnormals: the device keeps extra bits of tiny
    # values in the scaled domain; training rounds once when nothing overflows (faster)
    assert float((aligned == deployed).float().mean()) >= 0.97
    assert float((aligned - deployed).abs().max()) <= 1e-3 * float(deployed.abs().max())
    assert torch.equal(after, ref)
    assert not torch.equal(aligned, ref)
    assert "forward" not in model.__dict__


def test_straight_through_gradients_flow_and_bn_frozen() -> None:
    model = small_unet(2).train()
    bn_before = {n: b.clone() for n, b in model.named_buffers()}
    x = torch.round(torch.rand(4, 4, 32, 32) * 4095)
    target = (torch.rand(4, 32, 32) > 0.9).long()
    with aligned_training(model, "myriadx"):
        logits = model(x)
    loss = focal_loss(logits, target)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0
    bn_weights = [p.grad for n, p in model.named_parameters() if ".1.weight" in n]
    assert any(float(g.abs().sum()) > 0 for g in bn_weights)  # gamma trains through the fold
    for n, b in model.named_buffers():
        assert torch.equal(b, bn_before[n]), n  # running statistics frozen


def test_overflowing_model_trains_with_finite_gradients() -> None:
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))
    with torch.no_grad():
        model[0].weight.fill_(2.0)  # 36 * 4095 * 2 overflows FP16
    x = torch.full((2, 4, 8, 8), 4095.0)
    assert not torch.isfinite(deploy_fp16(model, "ieee")(x)).all()  # deployment: inf/NaN
    wrapped = constrain(model, "ieee")
    out = wrapped(x)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert float(model[0].weight.grad.sum()) > 0  # pushed toward smaller weights


def test_constrain_shares_parameters() -> None:
    model = small_unet(3)
    wrapped = constrain(model, "ieee")
    assert {id(p) for p in wrapped.parameters()} == {id(p) for p in model.parameters()}


@pytest.fixture(scope="module")
def tiny_data():
    from dalp_moo.data import open_source

    source = open_source(DataConfig(n_tiles=12, tile_size=32, seed=3))
    return source.split("train"), source.split("val")


def test_regimes_end_to_end_tiny(tiny_data) -> None:
    train_set, val_set = tiny_data
    cfg = TrainConfig(epochs=1, batch_size=4, finetune_epochs=1)
    model = small_unet(4)
    train_model(model, train_set, val_set, cfg, seed=0, device=torch.device("cpu"))

    def finetune(m: nn.Module, ctx) -> object:  # noqa: ANN001
        return train_model(m, train_set, val_set, cfg, seed=1, device=torch.device("cpu"),
                           epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, forward_context=ctx)

    def score(predict) -> float:  # noqa: ANN001
        return evaluate_segmentation(predict, val_set, 2).miou

    from dalp_moo import backends

    backend = backends.get("analytic")
    shape = (1, *tuple(val_set[0][0].shape))
    fp32_state = copy.deepcopy(model.state_dict())
    out = run_regimes(model, backend, shape, score, "dalp", "myriadx", finetune_fn=finetune)
    for value in (out.fp32, out.ptq, out.dalp):
        assert 0.0 <= value <= 1.0
    assert out.deployed == out.dalp and out.predict == out.deployment.predict
    assert out.finetune.epochs_run == 1 and out.input_rescale_k == 0
    assert any(not torch.equal(v, fp32_state[k]) for k, v in model.state_dict().items())
    ptq = run_regimes(small_unet(4), backend, shape, score, "ptq", "ieee")
    assert ptq.dalp is None and ptq.deployed == ptq.ptq
    fp32 = run_regimes(small_unet(4), backend, shape, score, "fp32", "ieee")
    assert fp32.ptq is None and fp32.deployed == fp32.fp32 and fp32.deployment.latency().latency_ms > 0
    with pytest.raises(ConfigError):
        run_regimes(small_unet(4), backend, shape, score, "int8")
    with pytest.raises(ConfigError, match="fine-tuning function"):
        run_regimes(small_unet(4), backend, shape, score, "dalp")
    assert gap_recovered(0.85, 0.78, 0.826) == pytest.approx(0.046 / 0.07)
    assert gap_recovered(0.8, 0.8, 0.8) is None


def test_aligned_context_is_reusable() -> None:
    model = small_unet(5)
    ctx = aligned_context(model, "ieee")
    x = torch.rand(1, 4, 32, 32) * 100
    with ctx():
        a = model(x)
    with ctx():
        b = model(x)
    assert torch.equal(a, b)


def test_diagnostics_json_and_table() -> None:
    model = nn.Sequential(nn.Conv2d(256, 4, 1, bias=False), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with torch.no_grad():
        model[0].weight.fill_(2.0 ** -7)  # shift 7: scaled output 256 * x
    x = torch.full((1, 256, 2, 2), 100.0)
    x[..., 0, 0] = 300.0  # 76800 in the scaled domain
    d = diagnose(model, "myriadx", [x, x])
    json.dumps(d)
    first = d["layers"][0]
    assert first["name"] == "0" and first["shift"] == 7
    assert first["overflow"] == 2 * 4  # one pixel x 4 channels x 2 batches
    assert first["max_abs_scaled"] == pytest.approx(76800.0)
    assert d["summary"]["first_overflow"] == "0"
    assert d["summary"]["output_nonfinite_fraction"] > 0
    table = format_diagnostics(d)
    assert "max|x*2^s|" in table and "first overflow: 0" in table
    clean = diagnose(model, "ieee", x, flush_subnormals=True)
    assert clean["summary"]["overflow"] == 0
    assert clean["layers"][0]["rel_err"] is not None and clean["layers"][0]["rel_err"] < 1e-3


def test_input_rescaling_removes_first_layer_overflow_and_keeps_fp32_function() -> None:
    from dalp_moo.precision.headroom import rescale_input_for_headroom

    torch.manual_seed(0)
    model = nn.Sequential(InputNorm([0.0] * 4, [1.0] * 4), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 2, 1)).eval()
    with torch.no_grad():
        model[1].weight.uniform_(0.05, 0.15)  # shift 3: 36 x 4000 x 0.1 x 8 overflows
    x = torch.full((2, 4, 8, 8), 4000.0)
    # the converted graph (input scale folded back into the convolution) undoes any rescaling
    assert rescale_input_for_headroom(copy.deepcopy(model), x, "myriadx") == 0
    # on the torch module as written, without the growing-output rule (which would lower every
    # shift by 5 here and leave nothing to fix), the rescaling gives the first layer headroom
    prof = get_profile("myriadx", fold_input_scale=False, input_preproc_rule=False)
    with torch.no_grad():
        before = model(x)
    assert diagnose(model, prof, x)["summary"]["overflow"] > 0
    assert diagnose(model, "myriadx", x)["summary"]["overflow"] == 0  # rule fires: no overflow
    k = rescale_input_for_headroom(model, x, prof)
    assert k >= 1
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(before, after, rtol=1e-6)
    assert diagnose(model, prof, x)["summary"]["overflow"] == 0
    assert rescale_input_for_headroom(model, x, prof) == 0  # nothing left to fix
    assert rescale_input_for_headroom(model, x, "ieee") == 0


class _EveryOp(nn.Module):
    """Folded batch norms (with and without conv bias), a batch norm that cannot be folded,
    GELU, squeeze-excitation (adaptive average pool, sigmoid, multiply), average pooling,
    residual add, concat, bilinear interpolation and a linear layer."""

    def __init__(self, norm_scale: float) -> None:
        super().__init__()
        from dalp_moo.model.blocks import SqueezeExcite

        self.norm = InputNorm([300.0] * 4, [norm_scale] * 4)
        self.c1, self.bn1 = nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.act = nn.GELU()
        self.c2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.se = SqueezeExcite(8, 2)
        self.pool = nn.AvgPool2d(2)
        self.c3, self.bn3 = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)
        self.c4 = nn.Conv2d(16, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        a = self.act(self.bn1(self.c1(x)))
        b = self.c2(a)
        b = self.se(self.bn2(b) + b * 0.5)  # c2's output feeds two ops: bn2 is not folded
        p = self.bn3(self.c3(self.pool(b)))
        u = F.interpolate(p, size=b.shape[-2:], mode="bilinear", align_corners=False)
        y = self.c4(torch.cat([u, b], dim=1)) + a[:, :4]
        return self.fc(y.permute(0, 2, 3, 1).reshape(-1, 4))


def _every_op_model(seed: int, norm_scale: float, first_scale: float = 1.0,
                    weight_scale: float = 1.0) -> nn.Module:
    torch.manual_seed(seed)
    model = _EveryOp(norm_scale)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 3.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
        model.c1.weight.mul_(first_scale)
        for p in model.c2.parameters():
            p.mul_(weight_scale)
    return model.train()


def _forward_backward(model: nn.Module, profile: object, x: torch.Tensor) -> tuple:
    with aligned_training(model, profile):
        y = model(x)
    (y.square().mean() + y.mean()).backward()
    grads = [p.grad for p in model.parameters()]
    return y.detach(), grads


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.contiguous().view(torch.int32),
                                              b.contiguous().view(torch.int32))


@pytest.mark.parametrize("case", [
    # profile, switches, input-norm scale, first-layer and c2 weight factors, input factor
    ("myriadx", {}, 1e-3, 1.0, 1.0, 1.0),
    ("myriadx", {}, 0.5, 8.0, 1.0, 1.0),  # growing-output rule: shifts at or below 0
    ("myriadx", {}, 1e-3, 1.0, 1.0, 40.0),  # activations overflow in the scaled domain
    ("myriadx", {"overflow": "saturate"}, 1e-3, 1.0, 1.0, 40.0),
    ("myriadx", {"fold_input_scale": False}, 1e-3, 1.0, 1.0, 1.0),
    ("myriadx", {"resize_mode": "model"}, 1e-3, 1.0, 1.0, 1.0),
    ("bf16", {}, 1e-3, 1.0, 1.0, 1.0),
    ("myriadx", {}, 1e-3, 1.0, 1e6, 1.0),  # weights overflow FP16: general path for all
    ("ieee", {}, 1e-3, 1.0, 1.0, 1.0),
    ("myriadx", {"accumulation": "fp16"}, 1e-3, 1.0, 1.0, 1.0),
    ("myriadx", {"flush_subnormals": True}, 1e-3, 1.0, 1.0, 1.0),
    ("myriadx", {"input_fp16": False}, 1e-3, 1.0, 1.0, 1.0),
    ("myriadx", {"eltwise_fp16": False}, 1e-3, 1.0, 1.0, 1.0),
])
def test_fast_training_forward_is_bit_exact(case: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """The prepared-weights / in-place-rounding route of the training forward computes the same
    bits (forward and gradients) as the general per-op straight-through path."""
    from dalp_moo.precision import emulate, get_profile

    name, switches, norm_scale, first_scale, weight_scale, input_scale = case
    profile = get_profile(name, **switches)
    x = torch.round(torch.rand(2, 4, 16, 16, generator=torch.Generator().manual_seed(7))
                    * 4000 * input_scale)
    fast_model = _every_op_model(0, norm_scale, first_scale, weight_scale)
    ref_model = copy.deepcopy(fast_model)
    fast = [_forward_backward(fast_model, profile, x) for _ in range(2)]  # probe, then cached

    calls = {"prepare": 0, "in_place": 0}
    real_prepare, real_round = emulate._Aligned.prepare, emulate.round_fp16_

    def counting_prepare(self, plan):  # noqa: ANN001, ANN202
        out = real_prepare(self, plan)
        calls["prepare"] += out is not None
        return out

    def counting_round(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        ok = real_round(*args, **kwargs)
        calls["in_place"] += ok
        return ok

    monkeypatch.setattr(emulate._Aligned, "prepare", counting_prepare)
    monkeypatch.setattr(emulate, "round_fp16_", counting_round)
    _forward_backward(copy.deepcopy(fast_model), profile, x)
    monkeypatch.setattr(emulate._Aligned, "prepare", lambda self, plan: None)
    monkeypatch.setattr(emulate, "round_fp16_", lambda *args, **kwargs: False)
    ref = [_forward_backward(ref_model, profile, x) for _ in range(2)]

    for (y_fast, g_fast), (y_ref, g_ref) in zip(fast, ref, strict=True):
        assert _same_bits(y_fast, y_ref)
        assert all(_same_bits(a, b) for a, b in zip(g_fast, g_ref, strict=True))
    assert calls["prepare"] == (0 if weight_scale > 1 else 1)
    if not (switches.get("flush_subnormals") or switches.get("eltwise_fp16") is False):
        assert calls["in_place"] > 0
