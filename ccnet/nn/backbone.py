"""ResNetV1c-D8 (deep stem, dilated, output stride 8) with mmsegmentation's module names.

Key names follow mmseg exactly (``stem.0``, ``layer3.5.conv2``, ``downsample.1`` ...) so a
released checkpoint's ``backbone.*`` sub-dict loads with ``strict=True``. The options beyond
mmseg's defaults (stem widths, ceil-mode pooling, dilation on every block) exist for the
CCNet authors' own ResNet-101, which differs from mmseg's only in those points.
"""
from __future__ import annotations

from torch import Tensor, nn

BLOCKS_PER_DEPTH = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
STRIDES = (1, 2, 1, 1)
DILATIONS = (1, 1, 2, 4)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs; as in mmseg, only the first is dilated (the second has padding 1)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride and dilation here: mmseg's "pytorch" style) -> 1x1, expansion 4."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetV1c(nn.Module):
    """Returns the outputs of layer1..layer4 (layer3 feeds the auxiliary head, layer4 the CCHead)."""

    def __init__(
        self,
        depth: int = 50,
        stem_channels: tuple[int, int, int] = (32, 32, 64),
        base_channels: int = 64,
        contract_dilation: bool = True,
        maxpool_ceil: bool = False,
    ) -> None:
        super().__init__()
        if depth not in BLOCKS_PER_DEPTH:
            raise ValueError(f"unsupported ResNet depth {depth}; expected one of {sorted(BLOCKS_PER_DEPTH)}")
        block = BasicBlock if depth < 50 else Bottleneck
        c1, c2, c3 = stem_channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, c1, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
            nn.Conv2d(c2, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3), nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=maxpool_ceil)
        in_ch = c3
        self.out_channels: list[int] = []
        for index, blocks in enumerate(BLOCKS_PER_DEPTH[depth]):
            planes = base_channels * 2**index
            layer, in_ch = self._make_layer(
                block, in_ch, planes, blocks, STRIDES[index], DILATIONS[index], contract_dilation
            )
            self.add_module(f"layer{index + 1}", layer)
            self.out_channels.append(in_ch)

    @staticmethod
    def _make_layer(block, in_ch, planes, blocks, stride, dilation, contract_dilation):  # noqa: ANN001, ANN205
        out_ch = planes * block.expansion
        downsample = None
        if stride != 1 or in_ch != out_ch:
            downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
        first_dilation = dilation // 2 if contract_dilation and dilation > 1 else dilation
        layers = [block(in_ch, planes, stride, first_dilation, downsample)]
        layers += [block(out_ch, planes, 1, dilation, None) for _ in range(blocks - 1)]
        return nn.Sequential(*layers), out_ch

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.stem(x))
        outs = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            outs.append(x)
        return outs
