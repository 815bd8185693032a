"""FP16 deployment numerics: rounding edge cases, per-layer agreement of the ``ieee`` profile
with exactly rounded FP16 execution (each op in float64, rounded once), the weights-analysis
shift, myriadx effects.

torch's native float16 CPU kernels are no reference here: they differ by instruction set (GELU
up to 6 ulp apart between CPU families); ``benchmarks/native_half_kernels.py`` measures them."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.overrides import TorchFunctionMode

from dalp_moo.errors import ConfigError
from dalp_moo.precision import (
    deploy_fp16,
    get_profile,
    round_fp16,
    weights_analysis_shift,
)
from dalp_moo.precision.numerics import fp16_exponents


def ulp_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance in binary16 ulps (of the larger magnitude) between float32 tensors of FP16 values."""
    mag = torch.maximum(a.abs(), b.abs()).clamp(min=2.0 ** -14)
    ulp = torch.exp2(torch.floor(torch.log2(mag)) - 10)
    d = (a - b).abs() / ulp
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    return torch.where(same, torch.zeros_like(d), d)


def _fp16_values(out: object) -> object:
    if isinstance(out, torch.Tensor) and out.is_floating_point():
        return out.half().to(out.dtype)
    if isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out):
        return type(out)(_fp16_values(o) for o in out)
    return out


class _RoundEachOp(TorchFunctionMode):
    """Rounds the floating result of every torch function called inside it to FP16 values."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        return _fp16_values(func(*args, **(kwargs or {})))


def fp16_reference(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Exactly rounded FP16 execution of ``module`` (host-independent): FP16 weights and input,
    every op computed in float64 and its result rounded once to FP16 (float32 tensor out)."""
    ref = copy.deepcopy(module).eval().half().double()
    with torch.no_grad(), _RoundEachOp():
        y = ref(x.half().double())
    return y.float()


def assert_reference_agreement(module: nn.Module, x: torch.Tensor, min_fraction: float = 0.999,
                               abs_floor: float = 0.0, deployed_as: nn.Module | None = None) -> None:
    """``ieee`` emulation within 1 ulp (or ``abs_floor``) of :func:`fp16_reference` (of
    ``deployed_as``, the converted graph's form, when given) on at least ``min_fraction`` of the
    outputs."""
    module = module.eval()
    emulated = deploy_fp16(module, "ieee")(x)
    reference = fp16_reference(module if deployed_as is None else deployed_as, x)
    assert emulated.shape == reference.shape
    dist = ulp_distance(emulated, reference)
    ok = (dist <= 1) | ((emulated - reference).abs() <= abs_floor)
    within = float(ok.float().mean())
    assert within >= min_fraction, f"{type(module).__name__}: only {within:.5f} within 1 ulp"


class Fn(nn.Module):
    """A module applying a functional op (so ops written inline in a forward are covered)."""

    def __init__(self, fn, *params: torch.Tensor) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn
        for i, p in enumerate(params):
            self.register_buffer(f"b{i}", p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self, x)


# --- rounding edge cases -------------------------------------------------------------------

def test_rounding_edge_cases() -> None:
    x = torch.tensor([65504.0, 65519.0, 65520.0, -65520.0, 2.0 ** -24, 2.0 ** -25,
                      3 * 2.0 ** -25, 2049.0, 2051.0, 4095.0, float("nan"), 1e-9])
    q = round_fp16(x)
    assert q[0] == 65504 and q[1] == 65504
    assert q[2] == float("inf") and q[3] == float("-inf")
    assert q[4] == 2.0 ** -24  # smallest subnormal is representable
    assert q[5] == 0.0  # tie between 0 and 2^-24 goes to even (0)
    assert q[6] == 2.0 ** -23  # 1.5 ulp -> 2 ulp (even)
    assert q[7] == 2048 and q[8] == 2052  # 11-bit significand: ties to even above 2048
    assert q[9] == 4096  # a raw 12-bit DN loses its low bit
    assert torch.isnan(q[10])
    assert q[11] == 0.0


def test_flush_to_zero() -> None:
    x = torch.tensor([2.0 ** -14, 2.0 ** -15, -(2.0 ** -20), 2.0 ** -24, 1.0])
    q = round_fp16(x, flush_subnormals=True)
    assert q.tolist() == [2.0 ** -14, 0.0, 0.0, 0.0, 1.0]
    assert round_fp16(x)[1] == 2.0 ** -15  # without FTZ the subnormal survives


def test_profiles() -> None:
    assert get_profile("ieee").weights_analysis is False
    p = get_profile("myriadx", flush_subnormals=True, accumulation="fp16", accum_chunk=4)
    assert p.weights_analysis and p.flush_subnormals and p.accum_chunk == 4
    with pytest.raises(ConfigError):
        get_profile("tpu")
    with pytest.raises(ConfigError):
        get_profile("ieee", no_such_switch=True)
    with pytest.raises(ConfigError):
        get_profile("ieee", accumulation="bf16")


# --- ieee vs exactly rounded float16, per layer type ------------------------------------------------

@pytest.mark.parametrize("module, shape", [
    (nn.Conv2d(8, 16, 3, padding=1), (2, 8, 20, 20)),
    (nn.Conv2d(16, 16, 5, padding=2, groups=16), (2, 16, 20, 20)),  # depthwise
    (nn.Conv2d(16, 8, 3, padding=1, groups=4), (2, 16, 20, 20)),  # grouped
    (nn.Conv2d(12, 24, 1, bias=False), (2, 12, 20, 20)),
    (nn.Linear(64, 32), (40, 64)),
    (nn.MaxPool2d(2), (2, 8, 20, 20)),
    (nn.AvgPool2d(2), (2, 8, 20, 20)),
    (nn.AdaptiveAvgPool2d(1), (2, 8, 20, 20)),
    (nn.ReLU(), (2, 8, 20, 20)),
    (nn.ReLU6(), (2, 8, 20, 20)),
    (nn.GELU(), (2, 8, 20, 20)),
    (nn.SiLU(), (2, 8, 20, 20)),
    (nn.Sigmoid(), (2, 8, 20, 20)),
])
def test_ieee_matches_fp16_reference_modules(module: nn.Module, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    # GELU in float32 (what the profile computes) cancels in 1 + erf(x / sqrt 2) for x < -3:
    # absolute error up to ~2^-22 there, several ulps of its tiny results
    floor = 2.0 ** -20 if isinstance(module, nn.GELU) else 0.0
    assert_reference_agreement(module, torch.randn(shape) * 4, abs_floor=floor)


@pytest.mark.parametrize("name", ["add", "mul", "cat", "upsample", "input_norm", "se"])
def test_ieee_matches_fp16_reference_functional(name: str) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 8, 16, 16) * 3
    if name == "add":
        m = Fn(lambda s, x: x + s.b0, torch.randn(1, 8, 16, 16) * 3)
    elif name == "mul":
        m = Fn(lambda s, x: x * s.b0, torch.randn(1, 8, 1, 1))
    elif name == "cat":
        m = Fn(lambda s, x: torch.cat([x, x * 0.3], dim=1))
    elif name == "upsample":
        m = Fn(lambda s, x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
    elif name == "input_norm":
        from dalp_moo.model import InputNorm
        m = InputNorm([300.0, 280.0, 250.0, 200.0] * 2, [1 / 40.0, 1 / 35.0, 1 / 50.0, 1 / 20.0] * 2)
        x = torch.round(torch.rand(2, 8, 16, 16) * 4095)
        # converted graph without a convolution to fold the scale into: x * s + (-m * s)
        converted = Fn(lambda s, x: x * s.b0 + s.b1, m.scale.clone(), -m.shift * m.scale)
    else:  # squeeze-excitation gate product
        m = Fn(lambda s, x: x * torch.sigmoid(F.adaptive_avg_pool2d(x, 1)))
    assert_reference_agreement(m, x, deployed_as=converted if name == "input_norm" else None)


def test_ieee_batchnorm_is_folded_like_deployment() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-2, 2)
        model[1].running_var.uniform_(0.1, 4)
        model[1].weight.uniform_(0.5, 2)
    x = torch.randn(2, 4, 16, 16)
    deployed = deploy_fp16(model, "ieee")
    y = deployed(x)
    assert isinstance(deployed.model[1], nn.Identity)  # folded, not executed
    assert isinstance(model[1], nn.BatchNorm2d)  # original untouched
    fused = nn.Sequential(fuse_conv_bn_eval(model[0], model[1]), nn.ReLU()).eval()
    reference = fp16_reference(fused, x)
    assert float((ulp_distance(y, reference) <= 1).float().mean()) >= 0.999


def test_deploy_leaves_model_untouched_and_is_eval_only() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8)).train()
    before = copy.deepcopy(model.state_dict())
    deployed = deploy_fp16(model, "myriadx", example_input=torch.randn(1, 4, 8, 8))
    deployed.train()
    assert not deployed.training
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(not p.requires_grad for p in deployed.parameters())


def test_unet_of_search_space_deploys() -> None:
    from dalp_moo.config import SpaceConfig
    from dalp_moo.model import InputNorm, build_model
    from dalp_moo.space import SearchSpace

    space = SearchSpace(SpaceConfig())
    rng = __import__("numpy").random.default_rng(0)
    torch.manual_seed(0)
    x = torch.round(torch.rand(2, 4, 32, 32) * 1000)
    for genome in space.sample(3, rng):
        arch = space.decode(genome)
        model = build_model(arch, 4, 2, InputNorm([0.0] * 4, [1 / 1000.0] * 4)).eval()
        with torch.no_grad():
            ref = model(x)
        y = deploy_fp16(model, "ieee")(x)
        assert y.shape == ref.shape
        assert torch.isfinite(y).all()
        rel = float((y - ref).norm() / ref.norm())
        assert rel < 2e-2, (arch.describe(), rel)


# --- weights analysis ------------------------------------------------------------------------

def test_fp16_exponents() -> None:
    w = torch.tensor([1.0, 0.5, 3.0, 0.0, 2.0 ** -20, -0.25, 65504.0])
    assert fp16_exponents(w).tolist() == [0, -1, 1, -15, -15, -2, 15]


def test_weights_analysis_shift_hand_made() -> None:
    # exponents -4, -5, -6, -7 (zeros and subnormals ignored): max -4, mean -22/4 -> -5 (trunc)
    w = torch.tensor([2.0 ** -4, -(2.0 ** -5), 1.5 * 2.0 ** -6, 2.0 ** -7, 0.0, 2.0 ** -20])
    # min(15 - (-4), 5) = 5
    assert weights_analysis_shift(w, "conv") == 5
    # tiny weights: exponents -12: min(27, 12) = 12 -> clamp 8 (conv) / 9 (fc)
    tiny = torch.full((10,), 2.0 ** -12)
    assert weights_analysis_shift(tiny, "conv") == 8
    assert weights_analysis_shift(tiny, "fc") == 9
    # first hardware layer with shift > 10 subtracts 8: 12 - 8 = 4
    assert weights_analysis_shift(tiny, "conv", first_layer=True) == 4
    # a large weight limits the shift through 15 - maxExp: exponents 12, -10, -10, -10 -> max 12,
    # mean -18/4 = -4.5 -> -4 (truncated toward zero) -> min(15 - 12, 4) = 3
    big = torch.tensor([4096.0, 2.0 ** -10, 2.0 ** -10, 2.0 ** -10])
    assert weights_analysis_shift(big, "conv") == 3
    # no normal weight: meanExp -15, maxExp -15 -> min(30, 15) = 15 -> clamp 8 (first: 15 - 8 = 7)
    assert weights_analysis_shift(torch.zeros(5), "conv") == 8
    assert weights_analysis_shift(torch.full((3,), 2.0 ** -20), "fc") == 9
    assert weights_analysis_shift(torch.zeros(5), "conv", first_layer=True) == 7
    assert weights_analysis_shift(tiny, "conv", profile=get_profile("myriadx", conv_shift_max=6)) == 6


def test_myriadx_overflows_in_scaled_domain() -> None:
    # 256 weights of 2^-7: shift min(15 + 7, 7) = 7, so the scaled weights are 1.0 and the scaled
    # output is 256 * x: x = 100 -> 25600 fits, x = 300 -> 76800 overflows although the true
    # output (600) fits FP16 easily
    model = nn.Conv2d(256, 1, 1, bias=False).eval()
    with torch.no_grad():
        model.weight.fill_(2.0 ** -7)
    x = torch.full((1, 256, 1, 2), 100.0)
    x[..., 1] = 300.0
    ieee = deploy_fp16(model, "ieee")(x)
    myr = deploy_fp16(model, "myriadx")
    y = myr(x)
    assert ieee.flatten().tolist() == [200.0, 600.0]
    assert myr.shifts()["weight"] == 7
    assert y[0, 0, 0, 0] == 200.0 and torch.isinf(y[0, 0, 0, 1])
    off = deploy_fp16(model, "myriadx", weights_analysis=False)(x)
    assert torch.equal(off, ieee)


def _two_convs(w1: float, w2: float, cin: int = 4, bias2: float | None = None) -> nn.Sequential:
    conv1 = nn.Conv2d(cin, 4, 1, bias=False)
    conv2 = nn.Conv2d(4, 4, 1, bias=bias2 is not None)
    with torch.no_grad():
        conv1.weight.fill_(w1)
        conv2.weight.fill_(w2)
        if bias2 is not None:
            conv2.bias.fill_(bias2)
    return nn.Sequential(conv1, conv2).eval()


def test_rule_a_raw_input_is_growing_output() -> None:
    """weights_analysis.cpp, checkGrowingOutput: true unless an input-fed Power/Convert/
    ScaleShift stage has a scale < 0.1, so a raw input (no preprocessing) is growing.
    Hand-worked: layer 1 weights 0.75 (exponent -1): raw shift min(15 + 1, 1) = 1 < 4 with 4 input
    channels -> normalVal 5; layer 1: 1 - 5 < 1 -> no scaling; layer 2 weights 2**-7: raw 7,
    corrected 7, 7 - 5 = 2."""
    from dalp_moo.model import InputNorm

    x = torch.rand(1, 4, 4, 4)
    raw = _two_convs(0.75, 2.0 ** -7)
    assert deploy_fp16(raw, "myriadx", example_input=x).shifts() == {"0.weight": 0, "1.weight": 2}
    identity = nn.Sequential(InputNorm([0.0] * 4, [1.0] * 4), *_two_convs(0.75, 2.0 ** -7))
    assert deploy_fp16(identity, "myriadx", example_input=x).shifts() == {
        "1.weight": 0, "2.weight": 2}
    # a preprocessing ScaleShift with a scale < 0.1 in front of the network (not folded into the
    # convolution): not growing, no offset -> shifts 1 and 7
    small = nn.Sequential(InputNorm([0.5] * 4, [0.05] * 4), *_two_convs(0.75, 2.0 ** -7))
    assert deploy_fp16(small, "myriadx", example_input=x, fold_input_scale=False).shifts() == {
        "1.weight": 1, "2.weight": 7}
    big = nn.Sequential(InputNorm([0.5] * 4, [0.5] * 4), *_two_convs(0.75, 2.0 ** -7))
    assert deploy_fp16(big, "myriadx", example_input=x, fold_input_scale=False).shifts() == {
        "1.weight": 0, "2.weight": 2}
    # the switch, and the first layer's "more than one input channel per group" condition
    assert deploy_fp16(raw, "myriadx", example_input=x, input_preproc_rule=False).shifts() == {
        "0.weight": 1, "1.weight": 7}
    single = _two_convs(0.75, 2.0 ** -7, cin=1)
    assert deploy_fp16(single, "myriadx", example_input=torch.rand(1, 1, 4, 4)).shifts() == {
        "0.weight": 1, "1.weight": 7}


def test_rule_b_first_shift_tested_before_correction() -> None:
    """The plugin tests "first shift < 4" on the raw shift, before the first-layer -8 correction
    and the clamp. Hand-worked: layer 1 weights 2**-11: raw min(26, 11) = 11, not < 4 -> no
    offset; corrected 11 - 8 = 3. Layer 2 weights 2**-6: 6. (Testing after the correction,
    3 < 4, would subtract 5 from both.)"""
    d = deploy_fp16(_two_convs(2.0 ** -11, 2.0 ** -6), "myriadx",
                    example_input=torch.rand(1, 4, 4, 4))
    assert d.shifts() == {"0.weight": 3, "1.weight": 6}


def test_rule_c_only_positive_shifts_scale() -> None:
    """scale = 1 << shift only when shift >= 1; a smaller shift means no scaling. Hand-worked:
    weights 2.0 (exponent 1): raw min(14, -1) = -1, growing offset 5 -> -6: no scaling, so an
    output of 2**-23 (a subnormal) survives; scaling by 2**-6 would have flushed it to 0."""
    model = nn.Conv2d(2, 1, 1, bias=False).eval()
    with torch.no_grad():
        model.weight.fill_(2.0)
    x = torch.tensor([2.0 ** -24, 0.0]).view(1, 2, 1, 1)
    d = deploy_fp16(model, "myriadx", example_input=x)
    assert d.shifts() == {"weight": 0}
    assert d(x).item() == 2.0 ** -23 == deploy_fp16(model, "ieee")(x).item()


def test_rule_d_all_zero_layer_gets_the_clamp() -> None:
    """A layer with no normal weight reads meanExp = maxExp = -15: raw min(30, 15) = 15 ->
    clamp 8. Hand-worked: layer 1 weights 2**-5 (raw 5, no offset), layer 2 all-zero weights with
    bias 300: shift 8, the bias stored in the 2**8 domain is 76800 > 65504: inf on the device
    (overflow 'inf'), 65504 / 256 = 255.875 when saturating."""
    model = _two_convs(2.0 ** -5, 0.0, bias2=300.0)
    x = torch.rand(1, 4, 2, 2)
    d = deploy_fp16(model, "myriadx", example_input=x)
    assert d.shifts() == {"0.weight": 5, "1.weight": 8}
    assert torch.isinf(d(x)).all()
    sat = deploy_fp16(model, "myriadx", example_input=x, overflow="saturate")
    assert (sat(x) == 255.875).all()
    assert (deploy_fp16(model, "ieee")(x) == 300.0).all()


def test_overflow_switch_rounding() -> None:
    x = torch.tensor([65519.0, 65520.0, -1e6, float("nan"), float("inf")])
    q = round_fp16(x, saturate=True)
    assert q[:3].tolist() == [65504.0, 65504.0, -65504.0]
    assert torch.isnan(q[3]) and q[4] == 65504.0
    assert torch.isinf(round_fp16(x)[1])
    with pytest.raises(ConfigError):
        get_profile("myriadx", overflow="wrap")
    with pytest.raises(ConfigError):
        get_profile("myriadx", resize_mode="nearest")


def test_resize_coordinate_switch() -> None:
    # 2x bilinear upsampling of [0, 4]: asymmetric src = dst / 2 -> [0, 2, 4, 4]; half-pixel
    # (the model's) src = (dst + 0.5) / 2 - 0.5 -> [0, 1, 3, 4]
    up = Fn(lambda s, x: F.interpolate(x, size=(1, 4), mode="bilinear", align_corners=False))
    x = torch.tensor([[[[0.0, 4.0]]]])
    assert deploy_fp16(up, "myriadx")(x).flatten().tolist() == [0.0, 2.0, 4.0, 4.0]
    assert deploy_fp16(up, "myriadx", resize_mode="model")(x).flatten().tolist() == [
        0.0, 1.0, 3.0, 4.0]
    assert deploy_fp16(up, "ieee")(x).flatten().tolist() == [0.0, 1.0, 3.0, 4.0]
    corners = Fn(lambda s, x: F.interpolate(x, size=(1, 4), mode="bilinear", align_corners=True))
    with torch.no_grad():
        assert torch.equal(deploy_fp16(corners, "myriadx")(x), round_fp16(corners(x)))  # kept
    # scale factor form and a 2-d case against a direct computation
    torch.manual_seed(0)
    x2 = torch.randn(2, 3, 5, 7)
    by_factor = Fn(lambda s, x: F.interpolate(x, scale_factor=2, mode="bilinear",
                                              align_corners=False))
    y = deploy_fp16(by_factor, "myriadx", input_fp16=False, eltwise_fp16=False)(x2)
    ref = torch.empty(2, 3, 10, 14)
    for i in range(10):
        for j in range(14):
            sy, sx = i / 2, j / 2
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
            fy, fx = sy - y0, sx - x0
            ref[..., i, j] = ((1 - fy) * ((1 - fx) * x2[..., y0, x0] + fx * x2[..., y0, x1])
                              + fy * ((1 - fx) * x2[..., y1, x0] + fx * x2[..., y1, x1]))
    assert torch.allclose(y, ref, atol=1e-6)


def test_fp16_accumulation_chunks() -> None:
    torch.manual_seed(4)
    conv = nn.Conv2d(64, 8, 3, padding=1, bias=False).eval()  # bias is added in FP16 last
    x = torch.randn(2, 64, 12, 12) * 2
    base = deploy_fp16(conv, "ieee")(x)
    huge = deploy_fp16(conv, "ieee", accumulation="fp16", accum_chunk=1000)(x)
    fine = deploy_fp16(conv, "ieee", accumulation="fp16", accum_chunk=1)(x)
    assert float((ulp_distance(huge, base) <= 1).float().mean()) >= 0.999  # one chunk = fp32
    with torch.no_grad():
        ref = conv(x)
    err_fine = float((fine - ref).abs().mean())
    err_base = float((base - ref).abs().mean())
    assert err_fine > err_base  # 64 rounded partial sums lose more than one rounding
    grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4).eval()
    xg = torch.randn(2, 16, 8, 8)
    g1 = deploy_fp16(grouped, "ieee", accumulation="fp16", accum_chunk=2)(xg)
    with torch.no_grad():
        assert float((g1 - grouped(xg)).abs().max()) < 0.05
    lin = nn.Linear(32, 5).eval()  # bias on the last dim, any leading dims
    xl = torch.randn(2, 3, 32)
    yl = deploy_fp16(lin, "ieee", accumulation="fp16", accum_chunk=8)(xl)
    assert yl.shape == (2, 3, 5)
    with torch.no_grad():
        assert float((yl - lin(xl)).abs().max()) < 0.02


def test_input_conversion_switch() -> None:
    model = Fn(lambda s, x: x - 2048.0)
    x = torch.tensor([[2049.0, 4095.0]])
    assert deploy_fp16(model, "ieee")(x).tolist() == [[0.0, 2048.0]]
    assert deploy_fp16(model, "ieee", input_fp16=False)(x).tolist() == [[1.0, 2047.0]]


# --- fast-path helpers of the training forward ---------------------------------------------

def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def test_in_place_rounding_matches_straight_through_forward() -> None:
    from dalp_moo.precision.numerics import round_fp16_, ste_round_fp16

    gen = torch.Generator().manual_seed(0)
    taken = {True: 0, False: 0}
    for trial in range(1500):
        scale = 2.0 ** int(torch.randint(-14, 10, (), generator=gen))
        mag = 10 ** float(torch.empty(()).uniform_(-9, 6, generator=gen))
        x = torch.randn(int(torch.randint(1, 200, (), generator=gen)), generator=gen) * mag
        edge = trial % 8
        if edge == 1:
            x[0] = 65519.0 / scale  # just below the scaled overflow threshold
        elif edge == 2:
            x[-1] = -65520.0 / scale  # overflows in the scaled domain
        elif edge == 3:
            x[0] = float("nan")
        elif edge == 4:
            x[0] = 1.25 * 2.0 ** -24 / min(scale, 1.0)  # double rounding of subnormals differs
        elif edge == 5:
            x[0] = 65504.0 + 8.0  # above 65504 but below the limit when scale < 1
        elif edge == 6:
            x[0] = -0.0
        ref = ste_round_fp16(x, scale, False, 1.0)
        y = x.clone()
        ok = round_fp16_(y, scale)
        taken[ok] += 1
        if ok:
            assert torch.equal(_bits(y), _bits(ref)), (scale, x, y, ref)
        else:  # overflow or NaN: untouched, the caller takes the general path
            assert torch.equal(_bits(y), _bits(x))
            assert bool(torch.isnan(x).any()) or float(x.abs().max()) >= 65520.0 / scale
    assert min(taken.values()) > 100
    assert round_fp16_(torch.zeros(0))


def test_batched_exponent_stats_give_the_per_layer_shift() -> None:
    from dalp_moo.precision.numerics import (
        exponent_segments,
        fp16_exponent_stats,
        shift_from_exponent_stats,
    )

    gen = torch.Generator().manual_seed(1)
    for trial in range(100):
        lengths = torch.randint(0, 60, (int(torch.randint(1, 9, (), generator=gen)),),
                                generator=gen).tolist()
        parts = []
        for n in lengths:
            mag = [1e-6, 1e-3, 1.0, 3e4][int(torch.randint(0, 4, (), generator=gen))]
            w = torch.randn(n, generator=gen) * mag
            if n > 3 and trial % 2:
                w[:3] = torch.tensor([0.0, -(2.0 ** -20), 65504.0])
            parts.append(round_fp16(w.clamp(-65504, 65504)))
        flat = torch.cat(parts)
        stats = fp16_exponent_stats(flat, exponent_segments(lengths), len(lengths))
        assert len(stats) == len(lengths)
        for w, (count, total, max_exp, min_exp) in zip(parts, stats, strict=True):
            e = fp16_exponents(w)
            valid = e != -15
            assert (count, total) == (int(valid.sum()), int((e * valid).sum()))
            assert max_exp == (int(e[valid].max()) if count else -15)
            nonzero = w[w != 0].abs()
            assert min_exp == (int(torch.frexp(nonzero.min())[1]) - 1 if nonzero.numel() else 127)
            for first in (False, True):
                for kind in ("conv", "fc"):
                    assert shift_from_exponent_stats(count, total, max_exp, kind, first) == \
                        weights_analysis_shift(w, kind, first)


def test_prepared_bias_exactness_rule() -> None:
    from dalp_moo.precision.emulate import _PreparedLayer
    from dalp_moo.precision.numerics import exponent_segments, fp16_exponent_stats, ste_round_fp16

    gen = torch.Generator().manual_seed(2)
    exact = 0
    for trial in range(600):
        mag = 10 ** float(torch.empty(()).uniform_(-7, 4.8, generator=gen))
        b = round_fp16((torch.randn(int(torch.randint(1, 30, (), generator=gen)), generator=gen)
                        * mag).clamp(-65504, 65504))
        if trial % 4 == 0:
            b[0] = 0.0
        _, _, max_exp, min_exp = fp16_exponent_stats(b, exponent_segments([b.numel()]), 1)[0]
        layer = _PreparedLayer(b, None, b, b, 0, bias_max_exp=max_exp, bias_min_exp=min_exp)
        for shift in range(-20, 10):
            if layer.bias_exact(shift):
                exact += 1
                ref = ste_round_fp16(b, 2.0 ** shift, False, 1.0)
                assert torch.equal(_bits(ref), _bits(b)), (shift, b, ref)
    assert exact > 5000
