"""The CCNet authors' checkpoint layout: converted logits match an independent rendering of their net.

The reference below is written from the authors' release (speedinghzl/CCNet) and their published
architecture only: it
reads THEIR key names with plain functional ops (stem 3->64->64->128, ceil-mode max-pool,
dilation 2/4 on every layer3/layer4 block, InPlace-ABN = BN with scale |w| + eps followed by
identity/ReLU in the backbone and LeakyReLU(0.01) in the head and dsn, a dense masked
criss-cross attention, the head's concat [backbone feature, RCCA output]). It shares no code
with ccnet.nn.model, so a wrong mapping or a wrong architecture flag changes the logits.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ccnet.errors import CheckpointError
from ccnet.inference.predictor import Predictor
from ccnet.weights.authors import AUTHORS_PROTOCOL, convert, is_authors_layout
from ccnet.weights.checkpoints import build_model
from ccnet.weights.datasets import dataset_info
from ccnet.weights.load import load_model
from tests.helpers import tiny_model

R101_BLOCKS = (3, 4, 23, 3)
ABN_EPS = 1e-5


def authors_state_dict(num_classes=19, stem=(64, 64, 128), base=64, blocks=R101_BLOCKS, seed=0):
    """Random weights in their layout. Widths scale with ``base``; 64 is the released size
    (head 2048 -> 512 -> 512, dsn 1024 -> 512), smaller bases keep the test fast."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(key, out_ch, in_ch, k, bias=False):
        sd[key + ".weight"] = torch.randn(out_ch, in_ch, k, k, generator=gen) * (2.0 / (in_ch * k * k)) ** 0.5
        if bias:
            sd[key + ".bias"] = torch.randn(out_ch, generator=gen) * 0.2

    def abn(key, ch):
        sign = torch.where(torch.rand(ch, generator=gen) < 0.4, -1.0, 1.0)  # negative weights on purpose
        sd[key + ".weight"] = sign * (0.3 + 0.7 * torch.rand(ch, generator=gen))
        sd[key + ".bias"] = torch.randn(ch, generator=gen) * 0.1
        sd[key + ".running_mean"] = torch.randn(ch, generator=gen) * 0.1
        sd[key + ".running_var"] = 0.5 + torch.rand(ch, generator=gen)

    conv("conv1", stem[0], 3, 3), abn("bn1", stem[0])
    conv("conv2", stem[1], stem[0], 3), abn("bn2", stem[1])
    conv("conv3", stem[2], stem[1], 3), abn("bn3", stem[2])
    inplanes = stem[2]
    for li, count in enumerate(blocks):
        planes = base * 2**li
        for bi in range(count):
            p = f"layer{li + 1}.{bi}"
            conv(f"{p}.conv1", planes, inplanes, 1), abn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3), abn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", planes * 4, planes, 1), abn(f"{p}.bn3", planes * 4)
            if bi == 0 and (li == 1 or inplanes != planes * 4):
                conv(f"{p}.downsample.0", planes * 4, inplanes, 1), abn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    c3, c4, inter = base * 16, base * 32, base * 8
    conv("head.conva.0", inter, c4, 3), abn("head.conva.1", inter)
    conv("head.cca.query_conv", inter // 8, inter, 1, bias=True)
    conv("head.cca.key_conv", inter // 8, inter, 1, bias=True)
    conv("head.cca.value_conv", inter, inter, 1, bias=True)
    sd["head.cca.gamma"] = torch.tensor([0.7])
    conv("head.convb.0", inter, inter, 3), abn("head.convb.1", inter)
    conv("head.bottleneck.0", inter, c4 + inter, 3), abn("head.bottleneck.1", inter)
    conv("head.bottleneck.3", num_classes, inter, 1, bias=True)
    conv("dsn.0", inter, c3, 3, bias=True), abn("dsn.1", inter)
    conv("dsn.3", num_classes, inter, 1, bias=True)
    return sd


def _abn(sd, key, x, act):
    x = F.batch_norm(x, sd[key + ".running_mean"], sd[key + ".running_var"],
                     sd[key + ".weight"].abs() + ABN_EPS, sd[key + ".bias"], False, 0.0, ABN_EPS)
    return {"relu": F.relu, "leaky": lambda t: F.leaky_relu(t, 0.01), "identity": lambda t: t}[act](x)


def _conv(sd, key, x, stride=1, dilation=1):
    weight = sd[key + ".weight"]
    pad = dilation * (weight.shape[-1] // 2)
    return F.conv2d(x, weight, sd.get(key + ".bias"), stride=stride, padding=pad, dilation=dilation)


def _cca(sd, x):
    """Dense criss-cross step: softmax over the H + W - 1 cells of each cell's row and column."""
    b, c, h, w = x.shape
    q = _conv(sd, "head.cca.query_conv", x).flatten(2)
    k = _conv(sd, "head.cca.key_conv", x).flatten(2)
    v = _conv(sd, "head.cca.value_conv", x).flatten(2)
    rows, cols = torch.arange(h * w) // w, torch.arange(h * w) % w
    cross = (rows[:, None] == rows[None, :]) | (cols[:, None] == cols[None, :])
    energy = torch.einsum("bcn,bcm->bnm", q, k).masked_fill(~cross, float("-inf"))
    out = torch.einsum("bnm,bcm->bcn", energy.softmax(-1), v).view(b, c, h, w)
    return sd["head.cca.gamma"] * out + x


def authors_forward(sd, x, recurrence=2):
    """Their network's (head logits, dsn logits), both at 1/8 of the input."""
    for i in (1, 2, 3):
        x = _abn(sd, f"bn{i}", _conv(sd, f"conv{i}", x, stride=2 if i == 1 else 1), "relu")
    x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
    for li, dilation in enumerate((1, 1, 2, 4)):
        bi = 0
        while f"layer{li + 1}.{bi}.conv1.weight" in sd:
            p, stride = f"layer{li + 1}.{bi}", 2 if (li == 1 and bi == 0) else 1
            out = _abn(sd, f"{p}.bn1", _conv(sd, f"{p}.conv1", x), "relu")
            out = _abn(sd, f"{p}.bn2", _conv(sd, f"{p}.conv2", out, stride, dilation), "relu")
            out = _abn(sd, f"{p}.bn3", _conv(sd, f"{p}.conv3", out), "identity")
            if f"{p}.downsample.0.weight" in sd:
                x = _abn(sd, f"{p}.downsample.1", _conv(sd, f"{p}.downsample.0", x, stride), "identity")
            x = F.relu(out + x)
            bi += 1
        if li == 2:
            dsn = _abn(sd, "dsn.1", _conv(sd, "dsn.0", x), "leaky")
            dsn = _conv(sd, "dsn.3", dsn)
    out = _abn(sd, "head.conva.1", _conv(sd, "head.conva.0", x), "leaky")
    for _ in range(recurrence):
        out = _cca(sd, out)
    out = _abn(sd, "head.convb.1", _conv(sd, "head.convb.0", out), "leaky")
    out = _abn(sd, "head.bottleneck.1", _conv(sd, "head.bottleneck.0", torch.cat([x, out], 1)), "leaky")
    return _conv(sd, "head.bottleneck.3", out), dsn


def assert_close(actual, expected):
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * max(scale, 1.0))


@pytest.fixture(scope="module")
def small():
    """Full R101 depth, narrow widths: (state dict, checkpoint path)."""
    return authors_state_dict(stem=(8, 8, 16), base=8, seed=1)


def save_bare(sd, path, prefix=""):
    torch.save({prefix + k: v for k, v in sd.items()}, path)
    return path


def test_detected_and_configured_from_the_file(small, tmp_path):
    loaded = load_model(str(save_bare(small, tmp_path / "ccnet_authors.pth", prefix="module.")))
    cfg = loaded.net.config
    assert (cfg.depth, cfg.stem_channels, cfg.base_channels, cfg.head_channels, cfg.aux_channels) == (
        101, (8, 8, 16), 8, 64, 64)
    assert (cfg.contract_dilation, cfg.maxpool_ceil, cfg.leaky_head, cfg.recurrence) == (False, True, True, 2)
    assert loaded.protocol == AUTHORS_PROTOCOL
    assert loaded.protocol.bgr and loaded.protocol.std == (1.0, 1.0, 1.0) and loaded.protocol.align_corners
    assert (loaded.protocol.mode, loaded.protocol.crop, loaded.protocol.stride) == ("slide", (769, 769), (513, 513))
    assert loaded.classes == tuple(dataset_info()["cityscapes"]["classes"])


def test_converted_logits_match_the_reference(small, tmp_path):
    net = load_model(str(save_bare(small, tmp_path / "theirs.pth"))).net
    # 68 x 84: the stem gives 34 x 42, where ceil and floor max-pooling differ (18 vs 17 rows).
    x = torch.randn(1, 3, 68, 84, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        head, dsn = authors_forward(small, x)
        logits, aux, _ = net.forward_train(x)
    assert head.shape == (1, 19, 9, 11)
    assert_close(logits, head)
    assert_close(aux, dsn)  # the dsn conv bias folded into the BN mean is exact


def test_released_size_matches_the_reference():
    sd = authors_state_dict(seed=2)
    assert sd["conv3.weight"].shape[0] == 128 and sd["head.bottleneck.0.weight"].shape[1] == 2560
    assert sd["dsn.0.weight"].shape[:2] == (512, 1024)
    net = build_model(*convert(sd))  # the file round trip is covered above, at a narrower width
    assert (net.config.head_channels, net.config.aux_channels, net.config.stem_channels) == (512, 512, (64, 64, 128))
    x = torch.randn(1, 3, 33, 33, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        head, _ = authors_forward(sd, x)
        assert_close(net(x), head)


def test_prediction_uses_their_input_protocol(small, tmp_path):
    loaded = load_model(str(save_bare(small, tmp_path / "theirs.pth")))
    image = np.random.default_rng(5).integers(0, 256, size=(41, 57, 3), dtype=np.uint8)
    logits = Predictor(loaded.net, loaded.protocol, device="cpu").predict(image, with_attention=False).logits
    bgr = torch.from_numpy(image[..., ::-1].astype(np.float32)).permute(2, 0, 1)[None]
    x = bgr - torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(1, 3, 1, 1)
    with torch.no_grad():
        head, _ = authors_forward(small, x)  # smaller than one 769 crop: a single window
    expected = F.interpolate(head, size=(41, 57), mode="bilinear", align_corners=True)[0]
    assert_close(logits, expected)


def test_mmseg_layout_is_not_taken_for_theirs():
    assert not is_authors_layout(tiny_model().state_dict())


def test_conversion_leaves_no_key_behind(small):
    converted, meta = convert(small)
    assert all(k.startswith(("backbone.", "decode_head.", "auxiliary_head.")) for k in converted)
    assert converted["decode_head.cca.gamma.scale"].shape == ()
    assert converted["backbone.stem.4.weight"].min() > 0  # |w| + eps
    assert meta["source"] == "speedinghzl/CCNet"


def test_incomplete_file_is_a_one_line_error(small, tmp_path):
    broken = {k: v for k, v in small.items() if not k.startswith("head.convb.")}
    with pytest.raises(CheckpointError, match=r"missing keys \(\d+\): decode_head\.convs\.1\.") as err:
        load_model(str(save_bare(broken, tmp_path / "broken.pth")))
    assert "\n" not in str(err.value)
