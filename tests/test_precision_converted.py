"""The emulator computes the converted graph (what ``ov.convert_model`` makes of the torch
module), and the deployment-aligned training forward follows the deployed overflow semantics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from dalp_moo.config import SpaceConfig
from dalp_moo.model import InputNorm, build_model
from dalp_moo.precision import aligned_training, deploy_fp16, get_profile, round_fp16
from dalp_moo.space import SearchSpace
from dalp_moo.space.genome import ACTIVATIONS, BLOCKS, CHANNEL_COEFFICIENTS, KERNELS, POOLINGS

STANDARDIZE = ([300.0, 280.0, 250.0, 200.0], [1 / 40.0, 1 / 35.0, 1 / 50.0, 1 / 20.0])


def unet(first_block: str, norm: tuple | None = STANDARDIZE, seed: int = 0) -> nn.Module:
    """A 3-unit U-Net whose first unit is ``first_block`` (the rest conv-BN-ReLU), with
    non-trivial batch-norm statistics."""
    space = SearchSpace(SpaceConfig())
    g = [space.unit_counts.index(3)]
    for block in (first_block, "conv_bn_act", "conv_bn_act"):
        g += [BLOCKS.index(block), ACTIVATIONS.index("relu"), KERNELS.index(3),
              CHANNEL_COEFFICIENTS.index(6), 0, 0, POOLINGS.index("max")]
    g += [0] * (space.n_var - len(g))
    torch.manual_seed(seed)
    norm_mod = InputNorm(*norm) if norm is not None else InputNorm([0.0] * 4, [1.0] * 4)
    model = build_model(space.decode(space.canonical(np.array(g))), 4, 2, norm_mod)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.2, 0.2, generator=gen)
    return model.eval()


def _ir_conv_weights(model: nn.Module, x: torch.Tensor) -> tuple[list[np.ndarray], bool]:
    """Weights of every (group) convolution of ``ov.convert_model(model)`` as
    ``[out, in/groups, kh, kw]`` arrays, and whether a Multiply reads the model input."""
    import openvino as ov

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = ov.convert_model(model, example_input=x, input=[tuple(x.shape)])
    weights = []
    for op in om.get_ordered_ops():
        if op.get_type_name() not in ("Convolution", "GroupConvolution"):
            continue
        node = op.input_value(1).get_node()
        while node.get_type_name() != "Constant":
            node = node.input_value(0).get_node()
        w = np.array(node.get_data(), dtype=np.float32)
        if op.get_type_name() == "GroupConvolution":
            w = w.reshape(-1, *w.shape[2:])
        weights.append(w)
    param = next(o for o in om.get_ordered_ops() if o.get_type_name() == "Parameter")
    multiply_on_input = any(t.get_node().get_type_name() == "Multiply"
                            for t in param.output(0).get_target_inputs())
    return weights, multiply_on_input


@pytest.mark.parametrize("first_block, norm, form", [
    ("conv_bn_act", STANDARDIZE, "folded"),  # one consumer: the multiply goes into the conv
    ("mbconv", STANDARDIZE, "folded"),
    ("resnet", STANDARDIZE, "muladd"),  # two consumers (shortcut): x * s + (-m * s)
    ("densenet", STANDARDIZE, "muladd"),  # a concat consumes the input too
    ("conv_act", None, ""),  # raw digital numbers: no preprocessing at all
])
def test_emulated_weights_are_the_converted_ones(first_block: str, norm: tuple | None,
                                                 form: str) -> None:
    model = unet(first_block, norm)
    x = torch.round(torch.rand(1, 4, 32, 32, generator=torch.Generator().manual_seed(0)) * 4095)
    deployed = deploy_fp16(model, "myriadx", example_input=x)
    assert deployed.plan is not None and deployed.plan.norm_form == form
    ir, multiply_on_input = _ir_conv_weights(model, x)
    assert multiply_on_input == (form == "muladd")
    params = {id(p): p for p in deployed.model.parameters()}
    emulated = [params[w].detach() for w in deployed.plan.order]
    assert len(emulated) == len(ir)
    unmatched = [torch.from_numpy(w) for w in ir]
    for w16 in emulated:  # every stored emulated weight is an FP16-stored IR weight
        best = None
        for i, w in enumerate(unmatched):
            if w.shape == w16.shape:
                same = float((round_fp16(w) == w16).float().mean())
                if best is None or same > best[1]:
                    best = (i, same)
        assert best is not None and best[1] >= 0.999, (first_block, w16.shape, best)
        unmatched.pop(best[0])


def test_converted_form_changes_the_shift_rule_and_undoes_rescaling() -> None:
    """Folding the input scale into the first convolution is what the weights analysis sees:
    a standardised input (scale about 1/40) makes the first layer's weights small, its raw shift
    large, and the growing-output rule no longer fires; rescaling the input by 2**-k and the
    weights by 2**k (function-preserving) deploys the same weights."""
    model = unet("conv_bn_act", STANDARDIZE)
    x = torch.round(torch.rand(1, 4, 32, 32, generator=torch.Generator().manual_seed(0)) * 4095)
    folded = deploy_fp16(model, "myriadx", example_input=x)
    torch_form = deploy_fp16(model, "myriadx", example_input=x, fold_input_scale=False)
    first = "encoder.0.0.weight"
    assert folded.shifts()[first] > torch_form.shifts()[first]
    rescaled = unet("conv_bn_act", STANDARDIZE)
    with torch.no_grad():
        rescaled.norm.scale.mul_(2.0 ** -3)
        rescaled.encoder[0][0].weight.mul_(2.0 ** 3)
    again = deploy_fp16(rescaled, "myriadx", example_input=x)
    assert again.shifts() == folded.shifts()
    assert torch.equal(again(x), folded(x))


def _overflowing_conv() -> nn.Module:
    # 256 weights of 2**-7: raw shift 7 (>= 4: no growing-output offset), applied 7; the scaled
    # output 256 * 2**-7 * 2**7 * x overflows 65504 for x = 300 (true value 600)
    conv = nn.Conv2d(256, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(2.0 ** -7)
    return conv


def test_aligned_forward_follows_the_overflow_semantics() -> None:
    x = torch.full((1, 256, 1, 2), 100.0)
    x[..., 1] = 300.0
    for overflow, expected in (("inf", float("inf")), ("saturate", 65504.0 / 128)):
        profile = get_profile("myriadx", overflow=overflow)
        model = _overflowing_conv()
        deployed = deploy_fp16(model, profile)(x)
        assert deployed[0, 0, 0, 0] == 200.0 and deployed[0, 0, 0, 1] == expected
        with aligned_training(model, profile):
            with torch.no_grad():  # validation: the deployed values, inf included
                assert torch.equal(model(x), deployed)
            y = model(x)  # with autograd
        assert y[0, 0, 0, 0] == 200.0 and y[0, 0, 0, 1] == 65504.0 / 128  # finite
        y.sum().backward()
        g = model.weight.grad
        assert torch.isfinite(g).all()
        # the overflowed element's task gradient is dropped; under 'inf' a restoring push
        # (toward smaller outputs: positive weight gradient) replaces it, under 'saturate' the
        # clamp's zero gradient; the in-range element contributes x = 100 per weight
        if overflow == "inf":
            assert float(g.min()) > 100.0
        else:
            assert torch.allclose(g, torch.full_like(g, 100.0))


@pytest.mark.parametrize("first_block", ["conv_bn_act", "resnet"])
@pytest.mark.parametrize("name, switches", [("myriadx", {}), ("myriadx", {"overflow": "saturate"}),
                                            ("bf16", {})])
def test_aligned_forward_equals_deployed_in_every_converted_form(first_block: str, name: str,
                                                                 switches: dict) -> None:
    model = unet(first_block, STANDARDIZE, seed=3)
    profile = get_profile(name, **switches)
    x = torch.round(torch.rand(2, 4, 32, 32, generator=torch.Generator().manual_seed(1)) * 4095)
    deployed = deploy_fp16(model, profile)(x)
    with torch.no_grad(), aligned_training(model, profile):
        aligned = model(x)
    assert float((aligned == deployed).float().mean()) >= 0.97
    assert float((aligned - deployed).abs().max()) <= 1e-3 * float(deployed.abs().max())
