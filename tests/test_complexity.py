"""Parameter and MAC counting against hand counts and the HRNet paper."""

from __future__ import annotations

import torch
from torch import nn

from famipose.models.complexity import count_macs, count_parameters
from famipose.models.hrnet import HRNet


def _meta_hrnet(name: str) -> HRNet:
    """Preset on the meta device: shapes only, so counting W48 costs no real compute."""
    with torch.device("meta"):
        return HRNet.from_name(name)


def test_single_conv_macs() -> None:
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
    # Output 5x4 for a 10x7 input at stride 2, padding 1.
    assert count_macs(conv, torch.zeros(1, 3, 10, 7)) == 8 * 3 * 3 * 3 * 5 * 4
    assert count_macs(conv, torch.zeros(4, 3, 10, 7)) == 4 * 8 * 3 * 3 * 3 * 5 * 4


def test_conv_stack_and_linear_macs() -> None:
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),  # 4*2*9 per pixel at 6x6
        nn.BatchNorm2d(4),  # not counted
        nn.ReLU(),
        nn.Conv2d(4, 6, 1, stride=2),  # 6*4 per pixel at 3x3
        nn.Flatten(),
        nn.Linear(6 * 3 * 3, 5),
    )
    expected = 4 * 2 * 9 * 36 + 6 * 4 * 9 + 54 * 5
    assert count_macs(net, torch.zeros(1, 2, 6, 6)) == expected


def test_grouped_conv_macs() -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
    assert count_macs(conv, torch.zeros(1, 8, 4, 4)) == 8 * 2 * 9 * 16


def test_modes_restored_and_no_graph() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout())
    net.train()
    net[2].eval()
    running_mean = net[1].running_mean.clone()
    count_macs(net, torch.randn(2, 1, 5, 5))
    assert [m.training for m in net.modules()] == [True, True, True, False]
    assert torch.equal(net[1].running_mean, running_mean)  # counted in eval mode


def test_count_parameters() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2, bias=False))
    assert count_parameters(net) == 4 * 3 * 9 + 4 + 4 + 4 + 8
    net[0].requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == 4 + 4 + 8
    shared = nn.Linear(3, 3)
    assert count_parameters(nn.Sequential(shared, shared)) == 12


def test_hrnet_complexity_matches_reference_numbers() -> None:
    w48, w32, tiny = _meta_hrnet("w48"), _meta_hrnet("w32"), _meta_hrnet("tiny")
    assert count_parameters(w48) == 63_595_745  # paper: 63.6M
    assert count_parameters(w32) == 28_536_113  # paper: 28.5M
    assert count_parameters(tiny) == 738_113
    image = torch.zeros(1, 3, 384, 288, device="meta")
    macs_w48 = count_macs(w48, image)
    assert macs_w48 == 35_306_606_592
    assert round(macs_w48 / 1e9, 1) == 35.3  # the paper's own counter reports 32.9 G
    assert count_macs(w32, torch.zeros(1, 3, 256, 192, device="meta")) == 7_645_003_776
    assert count_macs(w32, image) == 17_201_258_496
    assert count_macs(tiny, torch.zeros(1, 3, 128, 96, device="meta")) == 83_005_440
