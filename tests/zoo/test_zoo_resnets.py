"""The CIFAR ResNet-skeleton family of the zoo: ECA, Ghost, improved ConvNeXt block and
paper 004's ResNet-18 family; their option variants, counted against the papers."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from timm.layers import DropPath, EcaModule
from timm.models.ghostnet import GhostModule

from models.registry import count_params, create_model
from models.zoo.resnet_attention import ECA_POSITIONS
from models.zoo.paper004_resnets import CA_POOLINGS, CoordAtt

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def eval_out(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(X)


def rel_err(count: int, seed: int) -> float:
    return abs(count - seed) / seed


# --- ECA -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,count", [
    ("eca_resnet_20", 278_351), ("ecanet20_fixed_k3", 278_351), ("ecanet20_fixed_k5", 278_369),
    ("ecanet20_fixed_k7", 278_387), ("ecanet20_fixed_k9", 278_405),
    ("ecanet20_adaptive", 278_351)])
def test_eca_counts_are_exact(name, count):
    assert count_params(create_model(name)) == count


def test_eca_kernel_sizes():
    def kernels(name):
        return {m.conv.kernel_size[0] for m in create_model(name).modules()
                if isinstance(m, EcaModule)}
    assert kernels("ecanet20_adaptive") == {3}  # ECA rule, gamma=2, b=1, for 16/32/64 ch
    assert kernels("eca_resnet_32") == {5}
    assert rel_err(count_params(create_model("eca_resnet_32")), 470_000) <= 0.02
    assert sum(isinstance(m, EcaModule) for m in create_model("ecanet20_fixed_k9").modules()) == 9


def _eca_input_and_refs(position: str) -> tuple[torch.Tensor, dict]:
    """Run the first block of eca_resnet_20 and capture what its ECA saw, next to the
    conv1 output, the conv2 output and the block input (cloned before in-place ReLUs)."""
    block = create_model("eca_resnet_20", eca_position=position).eval().stages[0]
    seen = {}

    def keep(key, inputs=False):
        return lambda mod, inp, out: seen.__setitem__(key, (inp[0] if inputs else out).clone())
    block.conv1.register_forward_hook(keep("conv1"))
    block.conv2.register_forward_hook(keep("conv2"))
    block.eca.register_forward_hook(keep("eca_in", inputs=True))
    block.register_forward_hook(keep("block_in", inputs=True))
    with torch.no_grad():
        block(torch.randn(2, 16, 8, 8))
    return seen.pop("eca_in"), seen


def test_eca_position_sets_where_eca_sits():
    eca_in, ref = _eca_input_and_refs("after_conv1")
    torch.testing.assert_close(eca_in, ref["conv1"])
    eca_in, ref = _eca_input_and_refs("before_add")
    torch.testing.assert_close(eca_in, ref["conv2"])
    eca_in, ref = _eca_input_and_refs("after_add")
    torch.testing.assert_close(eca_in, ref["conv2"] + ref["block_in"])


def test_eca_positions_change_output_with_same_weights():
    base = create_model("eca_resnet_20")
    outs = []
    for position in ECA_POSITIONS:
        model = create_model("eca_resnet_20", eca_position=position)
        model.load_state_dict(base.state_dict())
        outs.append(eval_out(model))
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert not torch.allclose(outs[i], outs[j])


def test_zeroing_or_removing_eca_changes_output():
    model = create_model("eca_resnet_20")
    reference = eval_out(model)
    plain = create_model("resnet_20")
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and unexpected and all(".eca." in k for k in unexpected)
    assert not torch.allclose(eval_out(plain), reference)
    for m in model.modules():
        if isinstance(m, EcaModule):
            nn.init.zeros_(m.conv.weight)  # every gate becomes sigmoid(0) = 0.5
    assert not torch.allclose(eval_out(model), reference)


# --- Ghost -----------------------------------------------------------------------------

@pytest.mark.parametrize("ratio,seed", [(2, 149_000), (3, 109_000), (4, 84_000)])
def test_ghost_ratio_counts_match_seed(ratio, seed):
    model = create_model("ghost_resnet_20", ratio=ratio)
    assert rel_err(count_params(model), seed) <= 0.02
    ghosts = [m for m in model.modules() if isinstance(m, GhostModule)]
    assert len(ghosts) == 18  # both 3x3 convs of all 9 blocks
    assert all(g.primary_conv[0].out_channels == -(-g.out_chs // ratio) for g in ghosts)
    assert all(g.cheap_operation[0].kernel_size == (3, 3) for g in ghosts)


def test_ghost_resnet_32_documented_count():
    # models/README.md: the design that matches ResNet-20's three counts gives this.
    assert count_params(create_model("ghost_resnet_32")) == 249_636


# --- improved_resnet20_convnext -------------------------------------------------------

@pytest.mark.parametrize("options,seed", [
    ({}, 175_000), ({"droppath": False}, 175_000), ({"conv": "standard"}, 1_888_000),
    ({"inverted": False}, 39_000)])
def test_convnext_ablation_counts(options, seed):
    assert rel_err(count_params(create_model("improved_resnet20_convnext", **options)),
                   seed) <= 0.02


def test_convnext_block_design():
    model = create_model("improved_resnet20_convnext")
    drops = [m for m in model.modules() if isinstance(m, DropPath)]
    assert len(drops) == 9 and all(d.drop_prob == 0.05 for d in drops)
    dws = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(dws) == 9 and all(m.kernel_size == (7, 7) for m in dws)
    assert all(m.groups == m.in_channels == m.out_channels for m in dws)
    assert [m.in_channels for m in dws] == [64] * 3 + [64, 128, 128] + [128, 256, 256]
    assert sorted(m.stride[0] for m in dws) == [1] * 7 + [2] * 2
    assert not any(isinstance(m, DropPath)
                   for m in create_model("improved_resnet20_convnext", droppath=False).modules())
    no_inv = create_model("improved_resnet20_convnext", inverted=False)
    assert max(m.out_channels for m in no_inv.stages.modules() if isinstance(m, nn.Conv2d)) == 64


# --- paper 004 family -------------------------------------------------------------------

def test_ca_pooling_variants_differ():
    torch.manual_seed(0)
    base = CoordAtt(32)
    x = torch.randn(2, 32, 8, 8)
    outs = []
    for pooling in CA_POOLINGS:
        ca = CoordAtt(32, pooling=pooling)
        ca.load_state_dict(base.state_dict())
        with torch.no_grad():
            outs.append(ca.eval()(x))
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert not torch.allclose(outs[i], outs[j])


def test_ca_options_reach_the_model():
    model = create_model("resnet_ca", ca_pooling="avg_l2", activation="elu")
    cas = [m for m in model.modules() if isinstance(m, CoordAtt)]
    assert len(cas) == 8  # one per block, before the residual add
    assert all(ca.pooling == "avg_l2" and isinstance(ca.gate, nn.ELU) for ca in cas)
    default = create_model("resnet_ca")
    assert all(isinstance(m.gate, nn.Sigmoid) for m in default.modules() if isinstance(m, CoordAtt))
    assert count_params(default) > count_params(create_model("resnet18"))


def test_res2net_scale_changes_params():
    counts = [count_params(create_model("res2net", scale=s)) for s in (2, 4, 8)]
    assert len(set(counts)) == 3
    assert count_params(create_model("res2net_ca", scale=2)) != count_params(
        create_model("res2net_ca"))


def test_v1b_has_deep_stem_and_avg_pool_shortcut():
    v1b, plain = create_model("res2net_ca_v1b"), create_model("res2net_ca")
    def stem_convs(model):
        return sum(isinstance(m, nn.Conv2d) for m in model.stem.modules())
    assert (stem_convs(v1b), stem_convs(plain)) == (3, 1)
    pools = [m for b in v1b.stages if b.downsample is not None
             for m in b.downsample.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 3
    assert not any(isinstance(m, nn.AvgPool2d) for b in plain.stages if b.downsample is not None
                   for m in b.downsample.modules())


@pytest.mark.parametrize("name", ["resnet_ca", "res2net_ca_v1b"])
def test_paper004_forward_with_options(name):
    model = create_model(name, num_classes=10, ca_pooling="avg_l1", activation="gelu")
    out = model(X)
    out.sum().backward()
    assert out.shape == (2, 10) and torch.isfinite(out).all()
