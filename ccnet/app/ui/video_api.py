"""The video mode's named endpoints for gradio_client (and MCP): /segment_video and /attention_video,
on hidden components, in the views' queue with the image endpoints (the same limits and fairness:
a clip weighs all its frames' pixels there). Their contract is in docs/api.md."""
from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from ccnet import limits
from ccnet.app.exports import Exports
from ccnet.app.ui.api import tool_doc
from ccnet.app.ui.common import VIEWS, api_guard, upload_path
from ccnet.app.video import VIDEO_MODELS, VideoExplorer
from ccnet.errors import CCNetError

CLIP = (f"the clip: an animated GIF, PNG or WebP of {limits.MIN_FRAMES} to {limits.MAX_FRAMES} frames of one size, "
        f"at most {limits.MAX_CLIP_PIXELS:,} pixels together, {limits.MAX_CLIP_SECONDS} s and "
        f"{limits.FILE_BYTES / limits.MiB:g} MiB, as an "
        "uploaded file or, to the MCP tools, as base64 data (no MP4; the server fetches no URL)")
MODEL = (f'"" for {next(iter(VIDEO_MODELS.values()))}, or one of {", ".join(VIDEO_MODELS)}: heads '
         "trained on synthetic street clips on the embedded model's backbone")


def video_api_endpoints(video: VideoExplorer, exports: Exports) -> None:
    """/segment_video and /attention_video, on hidden components."""
    with gr.Group(visible=False):
        clip_in = gr.File(label="clip", type="filepath")
        t_in = gr.Number(label="t", precision=0)
        x_in, y_in = gr.Number(label="x", precision=0), gr.Number(label="y", precision=0)
        model_in = gr.Textbox("", label="model", info="empty: default:video")
        strip, heatmap = gr.Image(format="png"), gr.Image(format="png")
        segment_json, attention_json = gr.JSON(), gr.JSON()
    gr.on([], segment_video_endpoint(video, exports), [clip_in, model_in], [strip, segment_json],
          api_name="segment_video", concurrency_id=VIEWS, preprocess=False)
    gr.on([], attention_video_endpoint(video, exports), [clip_in, t_in, x_in, y_in, model_in],
          [heatmap, attention_json], api_name="attention_video", concurrency_id=VIEWS, preprocess=False)


def segment_video_endpoint(video: VideoExplorer, exports: Exports) -> Callable[..., tuple]:
    """The /segment_video endpoint's function (its name and docstring are also its MCP tool's)."""

    @api_guard
    def segment_video(clip: dict | str | None, model: str = "") -> tuple:
        analysis = video.analyse(upload_path(clip), model or None)
        return exports.picture(analysis, "strip", video.strip(analysis)), video.segment_json(analysis)

    segment_video.__doc__ = tool_doc(
        "Segment every frame of a short clip with a video CCNet whose 3D criss-cross attention looks across "
        "frames, and return the frames with their class colours side by side.",
        {"clip": CLIP, "model": MODEL},
        "The frames' overlays side by side (PNG, 4 px apart) and a JSON: model, frames (T), frame_size [H, W], "
        "grid [T, h, w] (the feature grid), kind, steps, seconds, device, legend (class name, colour, share of all "
        "frames' pixels) and frame_legends (each frame's classes and shares).")
    return segment_video


def attention_video_endpoint(video: VideoExplorer, exports: Exports) -> Callable[..., tuple]:
    """The /attention_video endpoint's function (its name and docstring are also its MCP tool's)."""

    @api_guard
    def attention_video(clip: dict | str | None, t: float | None, x: float | None, y: float | None,
                        model: str = "") -> tuple:
        if t is None or x is None or y is None:
            raise CCNetError("give the frame t and the pixel as x (column) and y (row)")
        analysis = video.analyse(upload_path(clip), model or None)
        maps = video.explain(analysis, t, x, y)
        data = video.attention_json(analysis, maps, int(x), int(y))
        return exports.picture(analysis, f"attention_t{maps.cell[0]}", video.attention_strip(
            analysis, maps, int(x), int(y))), data

    attention_video.__doc__ = tool_doc(
        "Where one pixel of one frame of a clip looks: its position's 3D criss-cross attention at each recurrence "
        "step (its time line, column and row) and composed over all steps, in every frame.",
        {"clip": CLIP + "; it is analysed once, then every pixel is answered from the server's cache",
         "t": "the frame of the pixel, 0 for the first, a whole number",
         "x": "the pixel's column in the frame (0 is the left edge), a whole number",
         "y": "the pixel's row in the frame (0 is the top edge), a whole number", "model": MODEL},
        "The composed map over every frame side by side (PNG, the pixel marked) and a JSON: grid [T, h, w], cell "
        "[t, row, col], steps (R maps of T x h x w weights, each summing to 1), composed (T x h x w, sums to 1), "
        "reach (positions that can carry weight after each step), frame, pixel, class, confidence, model, kind.")
    return attention_video
