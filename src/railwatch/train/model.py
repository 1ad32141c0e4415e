"""RailDet: a compact, fully convolutional, CenterNet-style ORIENTED detector (torch).

Input: RGB float (N, 3, H, W), H and W multiples of 16, pixels at 0.5 m, normalised
``x / 255 - 0.5``. Output: (N, 16, H/2, W/2) raw maps at stride 2 (see ``CHANNELS``).
The ONNX export wraps it with ``Exported``: sigmoid/softmax applied and a 3x3 max-pool
peak map, so inference needs only numpy on top of onnxruntime.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Output channel layout of the raw head.
CHANNELS: dict[str, slice] = {
    "heat": slice(0, 2),  # centre heatmaps: railcar, container
    "offset": slice(2, 4),  # sub-cell centre offset (dx, dy) in output cells
    "size": slice(4, 6),  # log(length_px), log(width_px) at input resolution
    "angle": slice(6, 8),  # sin 2θ, cos 2θ
    "cls": slice(8, 15),  # 7 railcar class logits
    "covered": slice(15, 16),  # covered logit
}
N_OUT = 16
STRIDE = 2


class SepConv(nn.Module):
    """Depthwise 3x3 + pointwise 1x1, BN, ReLU; optional residual."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, padding=dilation, dilation=dilation,
                            groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.dw(x)))
        y = self.bn2(self.pw(y))
        return F.relu(y + x) if self.res else F.relu(y)


class RailDet(nn.Module):
    """Tiny U-shaped encoder-decoder with stride-2 heads (a few hundred k parameters)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.width = width
        c1, c2, c3, c4 = width, width * 2, width * 4, width * 6
        self.stem = nn.Sequential(
            nn.Conv2d(3, c1, 3, 2, 1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True)
        )
        self.s2 = SepConv(c1, c1)
        self.s4 = nn.Sequential(SepConv(c1, c2, 2), SepConv(c2, c2))
        self.s8 = nn.Sequential(SepConv(c2, c3, 2), SepConv(c3, c3), SepConv(c3, c3, dilation=2))
        self.s16 = nn.Sequential(
            SepConv(c3, c4, 2), SepConv(c4, c4), SepConv(c4, c4, dilation=2), SepConv(c4, c4)
        )
        self.l8 = nn.Conv2d(c4, c3, 1)
        self.u8 = SepConv(c3, c3)
        self.l4 = nn.Conv2d(c3, c2, 1)
        self.u4 = SepConv(c2, c2)
        self.l2 = nn.Conv2d(c2, c1, 1)
        self.u2 = SepConv(c1, c1)
        self.head = nn.Sequential(SepConv(c1, 32), nn.Conv2d(32, N_OUT, 1))
        with torch.no_grad():
            self.head[-1].bias[CHANNELS["heat"]] = -4.6  # prior 0.01
            self.head[-1].bias[CHANNELS["size"]] = torch.tensor([3.4, 1.8])  # ~30 x 6 px

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f2 = self.s2(self.stem(x))
        f4 = self.s4(f2)
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        y = F.interpolate(self.l8(f16), scale_factor=2.0, mode="nearest") + f8
        y = self.u8(y)
        y = F.interpolate(self.l4(y), scale_factor=2.0, mode="nearest") + f4
        y = self.u4(y)
        y = F.interpolate(self.l2(y), scale_factor=2.0, mode="nearest") + f2
        return self.head(self.u2(y))


class Exported(nn.Module):
    """RailDet with activations and peak map, the graph that is written to ONNX.

    Takes uint8-range float RGB (N, 3, H, W) and normalises inside the graph.
    Outputs ``heat`` (N, 2, h, w) sigmoid, ``peaks`` (heat where it is a 3x3 local max,
    else 0) and ``maps`` (N, 14, h, w): offset, size, angle, class logits, covered
    probability. The class softmax is left to the decoder, which needs it only at peaks
    (over the whole map it cost 40 % of the model's CPU time).
    """

    def __init__(self, net: RailDet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.net(x / 255.0 - 0.5)
        heat = torch.sigmoid(raw[:, CHANNELS["heat"]])
        pooled = F.max_pool2d(heat, 3, 1, 1)
        peaks = heat * (pooled == heat).to(heat.dtype)
        maps = torch.cat(
            [
                raw[:, 2:8],
                raw[:, CHANNELS["cls"]],
                torch.sigmoid(raw[:, CHANNELS["covered"]]),
            ],
            dim=1,
        )
        return peaks, maps


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
