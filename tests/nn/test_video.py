"""The video CCNet: the space-time non-local block against a loop over its definition, T = 1 against
the image model (the embedded one and a tiny random R50-like one), the per-frame head against the
image model run frame by frame, and the 3D head mixing frames of a clip but never clips of a batch."""
from __future__ import annotations

import pytest
import torch

from ccnet.nn.attention import NonLocal2d
from ccnet.nn.model import CCNet, CCNetConfig
from ccnet.nn.nonlocal3d import NonLocal3d
from ccnet.nn.variants import HEADS, IMAGE_HEADS, VIDEO_HEADS, clip_variant
from ccnet.nn.video import VideoCCNet
from ccnet.weights.load import load_model
from tests.helpers import tiny_model

R50_LIKE = CCNetConfig(num_classes=5, depth=50, stem_channels=(8, 8, 16), base_channels=8, head_channels=16,
                       aux_channels=8)


def nonlocal_loop(block: NonLocal3d, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Output and (B, N, N) weights in float64 from the definition, one position at a time."""
    x = x.double()
    params = {name: p.detach().double() for name, p in block.named_parameters()}
    batch, _, frames, height, width = x.shape
    positions = [(t, h, w) for t in range(frames) for h in range(height) for w in range(width)]

    def project(name: str, b: int, p: tuple[int, int, int]) -> torch.Tensor:
        return params[f"{name}.weight"][:, :, 0, 0] @ x[b, :, p[0], p[1], p[2]] + params[f"{name}.bias"]

    out, weights = x.clone(), torch.zeros(batch, len(positions), len(positions), dtype=torch.float64)
    for b in range(batch):
        for i, u in enumerate(positions):
            energy = torch.stack([project("query_conv", b, u) @ project("key_conv", b, v) for v in positions])
            a = torch.exp(energy - energy.max())
            a = a / a.sum()
            out[b, :, u[0], u[1], u[2]] += params["gamma.scale"] * sum(
                a[j] * project("value_conv", b, v) for j, v in enumerate(positions))
            weights[b, i] = a
    return out, weights


def test_space_time_non_local_is_its_definition_and_loads_a_2d_block():
    torch.manual_seed(0)
    flat = NonLocal2d(16)
    with torch.no_grad():
        flat.gamma.scale.fill_(0.7)
    block = NonLocal3d(16)
    block.load_state_dict(flat.state_dict())  # the 2D block's parameter names
    block = block.double()
    x = torch.randn(2, 16, 3, 4, 5, dtype=torch.float64)
    out, attn = block(x, return_attention=True)
    ref_out, ref_attn = nonlocal_loop(block, x)
    assert attn.shape == (2, 60, 60)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(attn, ref_attn, rtol=0, atol=1e-12)
    one = torch.randn(1, 16, 1, 4, 5, dtype=torch.float64)  # T = 1 is the 2D block
    torch.testing.assert_close(block(one)[:, :, 0], flat.double()(one[:, :, 0]), rtol=0, atol=1e-12)


def test_the_table_gives_every_image_head_a_clip_head_with_its_block_and_steps():
    assert set(IMAGE_HEADS) | set(VIDEO_HEADS) == set(HEADS) and all(h.video for h in VIDEO_HEADS)
    assert [h.name for h in IMAGE_HEADS] == ["none", "rcca_r1", "rcca_r2", "rcca_r3", "nonlocal"]
    for image in IMAGE_HEADS:
        clip = clip_variant(image)
        assert (clip.attention, clip.steps) == (image.attention, image.steps)
        assert clip.video == (image.attention != "none") and clip.kind.endswith("-3d") == clip.video
    assert {clip_variant(h).name for h in IMAGE_HEADS if h.attention != "none"} == {h.name for h in VIDEO_HEADS}


def _gamma(net: torch.nn.Module, value: float) -> None:
    """A strong attention: gamma and the value projection scaled up, so that a wrong wiring shows."""
    block = net.decode_head.attention_block()
    if block is not None:
        with torch.no_grad():
            block.gamma.scale.fill_(value)
            block.value_conv.weight.mul_(20)


@pytest.mark.parametrize("attention, recurrence", [("cca", 1), ("cca", 2), ("cca", 3), ("nonlocal", 2),
                                                   ("none", 2)])
@pytest.mark.parametrize("per_frame", [False, True])
def test_one_frame_is_the_image_model_r50_like(attention, recurrence, per_frame):
    image = tiny_model(1, CCNetConfig(**{**R50_LIKE.to_dict(), "attention": attention, "recurrence": recurrence}))
    _gamma(image, 0.9)
    video = VideoCCNet.from_image(image, per_frame).eval()
    assert video.head_variant.video == (not per_frame and attention != "none")
    x = torch.randn(2, 3, 56, 72)
    with torch.no_grad():
        ref, ref_attn = image(x, return_attention=True)
        out, attn = video(x[:, :, None], return_attention=True)
    torch.testing.assert_close(out[:, :, 0], ref, rtol=1e-5, atol=1e-5)
    assert len(attn) == len(ref_attn) == video.head_variant.steps * (attention != "nonlocal") + (
        attention == "nonlocal")
    for a, r in zip(attn, ref_attn):
        if attention == "cca":  # [time | column | row] with one masked time entry
            assert a.shape == (2, 1, 7, 9, 17) and not a[..., 0].any()
            torch.testing.assert_close(a[:, 0, ..., 1:], r, rtol=1e-5, atol=1e-6)
        else:
            torch.testing.assert_close(a.reshape(r.shape), r, rtol=1e-5, atol=1e-6)


def test_one_frame_is_the_image_model_embedded_default():
    image = load_model("default").net.eval()
    video = VideoCCNet.from_image(image).eval()
    assert video.head_variant.name == "rcca3d_r2"
    x = torch.randn(1, 3, 128, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(video(x[:, :, None])[:, :, 0], image(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", ["cca", "nonlocal"])
def test_per_frame_heads_are_the_image_model_frame_by_frame(attention):
    image = tiny_model(2, CCNetConfig(**{**R50_LIKE.to_dict(), "attention": attention}))
    _gamma(image, 0.9)
    video = VideoCCNet.from_image(image, per_frame=True).eval()
    clips = torch.randn(2, 3, 3, 40, 48)
    with torch.no_grad():
        out = video(clips)
        for b in range(2):
            torch.testing.assert_close(out[b].transpose(0, 1), image(clips[b].transpose(0, 1)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", ["cca", "nonlocal"])
def test_a_3d_head_mixes_the_frames_of_a_clip_never_the_clips_of_a_batch(attention):
    image = tiny_model(3, CCNetConfig(**{**R50_LIKE.to_dict(), "attention": attention, "recurrence": 3}))
    _gamma(image, 0.9)
    video, per_frame = VideoCCNet.from_image(image).eval(), VideoCCNet.from_image(image, per_frame=True).eval()
    features = torch.randn(2, image.backbone.out_channels[3], 4, 5, 6)  # (B, C, T, h, w) into the heads
    changed = features.clone()
    changed[0, :, 0] = torch.randn(features.shape[1], 5, 6)  # only the first frame of the first clip
    with torch.no_grad():
        out, again = video.decode_head(features)[0], video.decode_head(changed)[0]
        assert (out[0, :, 1:] - again[0, :, 1:]).abs().max() > 1e-2  # the other frames see it
        assert torch.equal(out[1], again[1])  # the other clip does not
        alone = per_frame.decode_head(features)[0], per_frame.decode_head(changed)[0]
        torch.testing.assert_close(alone[0][0, :, 1:], alone[1][0, :, 1:], rtol=0, atol=1e-6)
        # criss-cross and non-local treat time as a set: reversed frames give reversed logits
        clips = torch.randn(2, 3, 4, 40, 48)
        torch.testing.assert_close(video(clips.flip(2)), video(clips).flip(2), rtol=1e-5, atol=1e-5)


def test_image_checkpoints_load_into_the_video_network_unchanged():
    image = CCNet(R50_LIKE)
    video = VideoCCNet(R50_LIKE, clip_variant(image.head_variant))
    missing = set(video.state_dict()) ^ {k for k in image.state_dict() if not k.startswith("auxiliary_head.")}
    assert not missing
