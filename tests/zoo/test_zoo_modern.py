"""The parts of the modern backbones written in the zoo (gnConv, MSCA, LSK) and the
CoAtNet-CIFAROpt options; the generic per-model checks are in test_models.py."""
from __future__ import annotations

import pytest
import torch

from models import count_params, create_model
from models.zoo.hornet import GnConv
from models.zoo.lsknet import LSKBlock
from models.zoo.segnext import MSCA


def _zero_(*convs):
    with torch.no_grad():
        for conv in convs:
            conv.weight.zero_()
            conv.bias.zero_()


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_gnconv_splits_into_one_gate_per_order(order):
    torch.manual_seed(0)
    conv = GnConv(32, order).eval()
    x = torch.randn(2, 32, 8, 8)
    p, gates = conv.gates(x)
    widths = [32 // 2 ** i for i in range(order)][::-1]
    assert p.shape == (2, widths[0], 8, 8)
    assert [g.shape[1] for g in gates] == widths
    assert len(conv.pws) == order - 1
    assert conv(x).shape == x.shape


def test_gnconv_rejects_widths_the_order_cannot_halve():
    with pytest.raises(ValueError, match="divisible by 16"):
        GnConv(24, 5)


@pytest.mark.parametrize("gate", [0, 1, 2])
def test_every_gnconv_gate_multiplies_into_the_output(gate):
    torch.manual_seed(0)
    conv = GnConv(32, 3).eval()
    x = torch.randn(2, 32, 8, 8)
    before = conv(x)
    start = sum(conv.dims[:gate])
    with torch.no_grad():  # silence one gate's depthwise filters: that gate becomes 0
        conv.dwconv.weight[start:start + conv.dims[gate]].zero_()
        conv.dwconv.bias[start:start + conv.dims[gate]].zero_()
    after = conv(x)
    assert not torch.allclose(before, after)
    if gate == len(conv.dims) - 1:  # the last gate multiplies the whole product: bias left
        assert torch.allclose(after, conv.proj_out.bias.view(1, -1, 1, 1).expand_as(after))


def test_msca_has_three_strip_branches_of_the_papers_kernels():
    msca = MSCA(16)
    shapes = [tuple(s[0].weight.shape[2:]) + tuple(s[1].weight.shape[2:]) for s in msca.strips]
    assert shapes == [(1, 7, 7, 1), (1, 11, 11, 1), (1, 21, 21, 1)]
    assert msca.conv0.kernel_size == (5, 5) and msca.conv0.groups == 16


@pytest.mark.parametrize("branch", [0, 1, 2])
def test_each_msca_strip_branch_contributes(branch):
    torch.manual_seed(0)
    msca = MSCA(16).eval()
    x = torch.randn(2, 16, 8, 8)
    before = msca(x)
    _zero_(*msca.strips[branch])
    after = msca(x)
    assert after.shape == x.shape and not torch.allclose(before, after)


def test_msca_output_is_attention_times_input():
    msca = MSCA(8).eval()
    assert torch.equal(msca(torch.zeros(1, 8, 6, 6)), torch.zeros(1, 8, 6, 6))


def test_lsk_selection_shapes_and_range():
    torch.manual_seed(0)
    block = LSKBlock(32).eval()
    x = torch.randn(2, 32, 8, 8)
    small, large, select = block.selection(x)
    assert small.shape == large.shape == (2, 16, 8, 8)
    assert select.shape == (2, 2, 8, 8) and 0 < select.min() and select.max() < 1
    assert block(x).shape == x.shape
    assert block.conv_large.dilation == (3, 3) and block.conv_large.kernel_size == (7, 7)


@pytest.mark.parametrize("branch", ["reduce_small", "reduce_large"])
def test_each_lsk_kernel_branch_contributes(branch):
    torch.manual_seed(0)
    block = LSKBlock(32).eval()
    x = torch.randn(2, 32, 8, 8)
    before = block(x)
    _zero_(getattr(block, branch))
    assert not torch.allclose(before, block(x))


def test_coatnet_cifar_opt_counts_and_channel_attention_variants():
    counts = {ca: count_params(create_model("coatnet_cifar_opt", channel_attention=ca))
              for ca in ("eca", "se", "none")}
    assert counts["eca"] == 26_348_548
    # SE's reduction MLPs cost ~0.48 M; ECA is a k-tap 1-D conv per block
    assert counts["se"] - counts["eca"] == 484_904
    assert 0 < counts["eca"] - counts["none"] < 100
    assert count_params(create_model("coatnet_cifar_opt", ffn_eca=False)) < counts["eca"]


def test_coatnet_cifar_opt_s3_depth_and_stems():
    base = create_model("coatnet_cifar_opt")
    assert len(base.stages[2].blocks) == 10
    assert base.stages[3].blocks[0].norm2.normalized_shape == (512,)
    assert len(create_model("coatnet_cifar_opt", s3_depth=14).stages[2].blocks) == 14
    assert base.stem.conv1.stride == (1, 1)
    assert create_model("coatnet_cifar_opt", stem="paper").stem.conv1.stride == (2, 2)
    assert create_model("coatnet_cifar_opt_large_stem").stem.conv1.kernel_size == (5, 5)
    with pytest.raises(ValueError, match="s3_depth"):
        create_model("coatnet_cifar_opt", s3_depth=0)


def test_cifar_stem_keeps_resolution_to_the_last_stage():
    x = torch.randn(1, 3, 32, 32)
    for stem, side in (("paper", 1), ("cifar", 4)):
        model = create_model("hornet_tiny", stem=stem).eval()
        assert model.features(x).shape[-1] == side
    tokens = {s: create_model("mlp_mixer_b16", stem=s).stem(x).shape[1] for s in ("paper", "cifar")}
    assert tokens == {"paper": 196, "cifar": 64}
