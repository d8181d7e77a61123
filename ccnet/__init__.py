"""CCNet Explorer: criss-cross attention (CCNet) in plain PyTorch, with its attention exposed.

    import ccnet
    loaded = ccnet.load_model("default")             # or a preset name, or a checkpoint file
    prediction = ccnet.Predictor(loaded.net, loaded.protocol).predict(image)  # RGB uint8 H x W x 3
    maps = ccnet.explain_pixel(prediction, x, y)     # per-step and composed attention of a pixel

    video = ccnet.load_video_model("default:video")  # or any name above: its head over a clip
    clip = ccnet.VideoPredictor(video.net, video.protocol).predict(ccnet.decode_clip("clip.gif"))
    maps = ccnet.explain_clip_pixel(clip, t, x, y)   # (R, T, h, w) steps and (T, h, w) composed
"""
from ccnet.inference.clips import decode_clip
from ccnet.inference.explain import explain_pixel
from ccnet.inference.predictor import Predictor
from ccnet.inference.video import VideoPredictor, explain_clip_pixel
from ccnet.nn.attention import CrissCrossAttention, NonLocal2d
from ccnet.nn.attention3d import CrissCrossAttention3d
from ccnet.nn.model import CCNet
from ccnet.weights.load import load_model
from ccnet.weights.video import load_video_model

__version__ = "0.1.0"
__all__ = [
    "CCNet", "CrissCrossAttention", "CrissCrossAttention3d", "NonLocal2d", "Predictor", "explain_pixel", "load_model",
    "VideoPredictor", "decode_clip", "explain_clip_pixel", "load_video_model",
]
