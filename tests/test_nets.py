"""Networks: paper parameter counts (Table 6 / Tables 1, 2, 4), shapes, encoder reuse."""
import pytest
import torch

from ecdp.nets import RRDBEncoder, RRDBNet, ScoreUNet, count_parameters


@pytest.mark.parametrize("name, blocks, taps, unet_blocks, paper_m", [
    ("div2k", 23, (1, 8, 15, 22), (2, 2, 2, 2), 42.6),
    ("imagenet", 16, (1, 5, 10, 15), (2, 2, 2, 2), 37.6),
    ("celeba", 8, (1, 3, 5, 7), (3, 3, 3, 3), 40.0),
])
def test_paper_configs_match_reported_parameter_counts(name, blocks, taps, unet_blocks, paper_m):
    with torch.device("meta"):
        encoder = RRDBEncoder(blocks=blocks, taps=taps)
        unet = ScoreUNet(blocks=unet_blocks, cond_channels=encoder.out_channels)
    total = (count_parameters(encoder) + count_parameters(unet)) / 1e6
    assert total == pytest.approx(paper_m, rel=0.01)


def test_rrdbnet_sizes_of_both_releases():
    """ECDP's RRDBNet has no ESRGAN trunk conv (16.661M); ESRGAN's / SRDiff's has (16.698M)."""
    with torch.device("meta"):
        assert count_parameters(RRDBNet(scale=4)) == 16_661_059
        assert count_parameters(RRDBNet(scale=4, trunk_conv=True)) == 16_697_987


def test_released_inits():
    """ECDP's release: conv biases zero, block output convs x1e-3, 1x1 skips x0.1, dense-block
    weights and biases x0.1; SR3's: orthogonal weights."""
    from baselines.sr3 import SR3
    torch.manual_seed(0)
    unet = ScoreUNet(channels=(8, 16), blocks=(1, 1), time_channels=8, cond_channels=4)
    convs = [m for m in unet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(float(c.bias.abs().max()) == 0 for c in convs)
    block = unet.down[2]  # 8 -> 16 channels: a 1x1 skip; PyTorch's default bound 1 / sqrt(8)
    assert 0.05 / 8**0.5 < block.skip.weight.abs().max() <= 0.1 / 8**0.5 + 1e-9
    assert 0 < block.conv2.weight.abs().max() <= 1e-3 / (16 * 9) ** 0.5 + 1e-9
    rrdb = RRDBNet(scale=4, features=8, growth=4, blocks=1)
    dense = rrdb.trunk.blocks[0].blocks[0].convs[0]
    bound = 1 / (8 * 9) ** 0.5  # PyTorch's default uniform bound for this conv
    assert dense.bias.abs().max() <= 0.1 * bound + 1e-9 and dense.bias.abs().max() > 0
    assert dense.weight.abs().max() <= 0.1 * bound + 1e-9
    sr3 = SR3(scale=4, net={"channels": [8], "blocks": [1], "time_channels": 8, "norm_groups": 4})
    w = sr3.unet.conv_in.weight.flatten(1)  # (8, 54): orthonormal rows
    assert torch.allclose(w @ w.T, torch.eye(8), atol=1e-5)


def test_shapes_and_odd_sizes():
    enc = RRDBEncoder(features=8, growth=4, blocks=3, taps=(0, 2))
    unet = ScoreUNet(channels=(8, 16), blocks=(1, 1), time_channels=8, cond_channels=16)
    lr = torch.rand(2, 3, 7, 9)
    feats = enc(lr)
    assert feats.shape == (2, 16, 7, 9)
    out = unet(torch.randn(2, 3, 28, 36), torch.rand(2), feats)
    assert out.shape == (2, 6, 28, 36)
    out = unet(torch.randn(1, 3, 27, 33), torch.tensor(0.5), feats[:1])
    assert out.shape == (1, 6, 27, 33)
    net = RRDBNet(scale=8, features=8, growth=4, blocks=2)
    assert net(lr).shape == (2, 3, 56, 72)


def test_encoder_from_rrdbnet_reuses_the_trained_trunk():
    net = RRDBNet(scale=4, features=8, growth=4, blocks=4)
    enc = RRDBEncoder.from_rrdbnet(net, (1, 2))
    lr = torch.rand(1, 3, 6, 6)
    _, tapped = net.trunk(lr, (1, 2))
    assert torch.equal(enc(lr), torch.cat(tapped, 1))
    assert len(enc.trunk.blocks) == 3  # blocks after the last tap are not kept
    with pytest.raises(ValueError, match="taps"):
        RRDBEncoder(blocks=3, taps=(5,))


def test_lr_features_reach_every_resblock():
    unet = ScoreUNet(channels=(8, 16), blocks=(1, 1), time_channels=8, cond_channels=4)
    feats = torch.rand(1, 4, 5, 5, requires_grad=True)
    unet(torch.randn(1, 3, 20, 20), torch.rand(1), feats).sum().backward()
    conds = [m.cond for m in unet.modules() if hasattr(m, "cond") and m.cond is not None]
    assert len(conds) == 2 + 2 + 4  # down blocks, mid, up blocks (blocks + 1 per level)
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in conds)
