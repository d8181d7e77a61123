"""The video mode, a page of its own at /video: a clip's frames in a strip with their segmentation,
and the video viewer (video.js, video_events.js, video.css) drawing, in every frame, where a
hovered position looks after each 3D criss-cross step. Layout and wiring only: what each event
does is a call into ccnet/app/video.py (the analysis), video_maps.py (the page's data) and
video_links.py (deep links)."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from ccnet import limits
from ccnet.app.browser_maps import BUDGET_BYTES
from ccnet.app.explorer import image_key
from ccnet.app.exports import Exports
from ccnet.app.links import EXPIRED
from ccnet.app.present import legend_html, md_text
from ccnet.app.server.blobs import BLOBS
from ccnet.app.ui.common import VIEWS, Updates, ui_guard, upload_path, visitor
from ccnet.app.video import VIDEO_MODELS, ClipAnalysis, VideoExplorer
from ccnet.app.video_links import parse_clip_link
from ccnet.app.video_maps import in_browser, page_data, pinned_maps, viewer_value
from ccnet.errors import CCNetError, for_visitor
from ccnet.project import DEMOS

HERE = Path(__file__).parent
PATH = "video"  # the page's address: /video
DEMO_CLIPS = sorted(str(p) for p in DEMOS.glob("*clip*") if p.suffix in (".webp", ".gif", ".png"))
FIRST_CLIP = str(DEMOS / "clip_seed10_truck.webp")  # the page opens on this clip ...
FIRST_PIN = (1, 78, 84)  # ... with a truck pixel of a frame without the panel pinned: (t, x, y)
VIEWER_ROOT = '<div class="ccvv-root" data-testid="video-viewer" tabindex="0"></div>'
VIEWER_SCRIPT = "\n".join((HERE / name).read_text() for name in ("shared.js", "video.js", "video_events.js"))
LEAD = (
    "### Video · 3D criss-cross attention across frames\n"
    "Each step looks along a position's **time line, column and row**; it takes **three steps** to reach every "
    "position of a clip. In these synthetic clips the panel that says car (blue) or truck (red) shows in **one "
    "frame**: hover a vehicle in another frame and follow its weights across time, step by step."
)
HINT = ("Hover a pixel of any frame: every frame shows where its position looks. Click, tap or press Enter to pin; "
        "arrows move, [ and ] change frame.")
MODEL_INFO = ("3D criss-cross (R = 3 reaches the whole clip, R = 2 does not) or space-time non-local, trained "
              "on clips on the embedded model's backbone")
LIMITS = (f"A clip is an animated GIF, PNG or WebP of {limits.MIN_FRAMES} to {limits.MAX_FRAMES} frames of one size, "
          f"at most {limits.MAX_CLIP_PIXELS:,} pixels together, playing at most {limits.MAX_CLIP_SECONDS} s, files up "
          f"to {limits.FILE_BYTES / limits.MiB:g} MiB (no MP4: docs/video.md says why). The heads were trained on the "
          "embedded model's synthetic streets.")
FILE_TYPES = [".gif", ".png", ".apng", ".webp"]


class VideoUI:
    """The /video page around one VideoExplorer (heads and clips cached for every visitor)."""

    def __init__(self, video: VideoExplorer, exports: Exports, budget: int = BUDGET_BYTES) -> None:
        self.video, self.exports, self.budget = video, exports, budget
        self.demo_names = {image_key(path): Path(path).name for path in DEMO_CLIPS}  # links name a demo, not its key

    def layout(self) -> None:
        gr.Navbar(main_page_name="Images")  # this page's bar: back to the images
        gr.Markdown(LEAD, elem_id="video-intro")
        self.key_state, self.pin_state = gr.State(None), gr.State(None)
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=300):
                self.status = gr.Markdown(self.video.status(), elem_id="video-status")
                self.viewer = gr.HTML(None, html_template=VIEWER_ROOT, elem_id="video-viewer", padding=False,
                                      css_template=(HERE / "video.css").read_text(), js_on_load=VIEWER_SCRIPT)
                self.pixel = gr.Markdown(HINT, elem_id="video-pixel")
            with gr.Column(scale=1, min_width=270):
                self.clip = gr.File(label="clip (animated GIF, PNG or WebP)", file_types=FILE_TYPES,
                                    type="filepath", elem_id="video-input", height=120)
                # the file box holds the clip shown (a demo's too) and has no drop zone then: a button that
                # always takes an upload
                self.upload = gr.UploadButton("upload a clip", file_types=FILE_TYPES, type="filepath",
                                              elem_id="video-upload", size="sm", variant="secondary")
                self.examples = gr.Examples(DEMO_CLIPS, inputs=[self.clip], label="demo clips (synthetic streets)",
                                            cache_examples=False, api_visibility="private")
                self.model = gr.Dropdown([(label, name) for name, label in VIDEO_MODELS.items()],
                                         value=next(iter(VIDEO_MODELS)), label="video head", elem_id="video-model",
                                         info=MODEL_INFO)
                self.legend = gr.HTML(elem_id="video-legend")
        gr.Markdown(LIMITS, elem_id="video-limits")

    @property
    def views_out(self) -> list:
        return [self.viewer, self.status, self.pixel, self.legend, self.key_state, self.pin_state]

    def wire(self, demo: gr.Blocks) -> None:
        private = dict(api_visibility="private", preprocess=False, concurrency_id=VIEWS)
        for trigger in (self.clip.upload, self.examples.load_input_event.then):
            trigger(self.on_clip, [self.clip, self.model], self.views_out, **private)
        self.upload.upload(self.on_upload, [self.upload, self.model], [*self.views_out, self.clip], **private)
        self.clip.clear(self.on_clear, [self.model], self.views_out, **private)
        self.model.input(self.on_model, [self.clip, self.key_state, self.model, self.pin_state], self.views_out,
                         **private)
        self.viewer.click(self.on_pin, [self.clip, self.key_state, self.model],
                          [self.pixel, self.viewer, self.status, self.pin_state], show_progress_on=[self.pixel],
                          **private)
        demo.load(self.on_load, None, [*self.views_out, self.clip, self.model], concurrency_id=VIEWS,
                  api_visibility="private")

    # ---- what the page shows ----------------------------------------------------------------------
    def viewer_for(self, analysis: ClipAnalysis, key: str | None, pin: tuple | None = None, view: str | None = None,
                   display: dict | None = None, t: int | None = None, maps: object = None) -> dict:
        """The viewer's value: a few hundred bytes naming the URL of the clip's page data, the
        upload's link key or the demo's name, the pin and the display; over the budget, the URL
        of the pinned position's maps."""
        identity = ("video", analysis.model, analysis.key, self.budget)
        loaded = self.video.model(analysis.model)[0]
        data = BLOBS.url(identity, lambda: json.dumps(page_data(
            analysis, loaded.classes, loaded.palette, loaded.net.config.head_channels, self.budget)).encode())
        value = viewer_value(analysis, data, self.budget)
        value.update(key=key, clip=self.demo_names.get(analysis.key), view=view, display=display or {},
                     pin=list(pin) if pin else None, t=t)
        if maps is not None and not value["maps"]:
            value["pinned"] = BLOBS.url((*identity, maps.cell), lambda: json.dumps(pinned_maps(maps)).encode())
        return value

    def views(self, analysis: ClipAnalysis, key: str | None, pin: tuple | None = None, view: str | None = None,
              display: dict | None = None, t: int | None = None) -> Updates:
        """Everything a clip shows; with `pin` (t, x, y), that pixel pinned."""
        loaded = self.video.model(analysis.model)[0]
        updates = {self.viewer: self.viewer_for(analysis, key, pin, view, display, t),
                   self.status: self.video.status(analysis), self.pixel: HINT, self.key_state: key,
                   self.legend: legend_html(analysis, loaded.classes, loaded.palette), self.pin_state: None}
        if pin:
            updates.update(self.pin_views(analysis, key, pin, view, display))
        return updates

    def pin_views(self, analysis: ClipAnalysis, key: str | None, pin: tuple, view: str | None = None,
                  display: dict | None = None) -> Updates:
        """A pinned pixel: its class and confidence, its position and reach; over the budget, its maps."""
        maps = self.video.explain(analysis, *pin)
        t, x, y = maps.cell[0], int(pin[1]), int(pin[2])
        data = self.video.attention_json(analysis, maps, x, y)
        frames, h, w = analysis.grid
        line = (f"frame {t} · pixel ({x}, {y}) → **{md_text(data['class'])}** ({100 * data['confidence']:.1f}% "
                f"confident) · position ({t}, {maps.cell[1]}, {maps.cell[2]}) of {frames}×{h}×{w} · reach after "
                f"each step: {', '.join(f'{n:,}' for n in data['reach'])} positions")
        updates = {self.pixel: line, self.pin_state: [t, x, y]}
        if not in_browser(analysis, self.budget):
            updates[self.viewer] = self.viewer_for(analysis, key, (t, x, y), view, display, maps=maps)
        return updates

    def cleared(self, model: str | None, message: str) -> Updates:
        return {self.viewer: None, self.status: f"{self.video.status(None, model)} · {message}", self.pixel: HINT,
                self.legend: "", self.key_state: None, self.pin_state: None}

    def current(self, clip: dict | str | None, key: str | None, model: str | None,
                client: str | None = None) -> tuple[ClipAnalysis, str | None]:
        """The clip the page shows, analysed (cached), and its upload's link key (None for a demo; a
        new key only for an event that keeps it, which passes `client`)."""
        path = upload_path(clip)
        if path is None and key:
            found = self.video.links.resolve(key)
            if found is None:
                raise CCNetError(EXPIRED.replace("image", "clip"))
            path = found[1]
        analysis = self.video.analyse(path, model)
        if analysis.key in self.demo_names:
            return analysis, None
        return analysis, self.video.links.issue(analysis.key, path, key, client)

    # ---- events -----------------------------------------------------------------------------------
    @ui_guard
    def on_clip(self, clip: dict | None, model: str, request: gr.Request | None = None) -> Updates:
        if upload_path(clip) is None:
            return self.cleared(model, "Upload a clip or pick a demo clip.")
        try:
            return self.views(*self.current(clip, None, model, visitor(request)))
        except CCNetError as err:  # a bad clip: one line, every view emptied
            return self.cleared(model, f"⚠️ {md_text(for_visitor(err))}")

    @ui_guard
    def on_upload(self, clip: dict | None, model: str, request: gr.Request | None = None) -> Updates:
        """The button's upload: shown as on_clip, and in the file box (emptied when it is refused)."""
        updates = self.on_clip(clip, model, request)
        updates[self.clip] = upload_path(clip) if updates.get(self.key_state) else None
        return updates

    @ui_guard
    def on_clear(self, model: str) -> Updates:
        return self.cleared(model, "Upload a clip or pick a demo clip.")

    @ui_guard
    def on_model(self, clip: dict | None, key: str | None, model: str, pin: list | None,
                 request: gr.Request | None = None) -> Updates:
        """Another head on the same clip, the pinned pixel still pinned."""
        if upload_path(clip) is None and not key:
            return {self.status: self.video.status(None, model)}
        return self.views(*self.current(clip, key, model, visitor(request)), tuple(pin) if pin else None)

    @ui_guard
    def on_pin(self, clip: dict | None, key: str | None, model: str, evt: gr.EventData) -> Updates:
        data = evt._data if isinstance(evt._data, dict) else {}
        analysis, link = self.current(clip, key, model)
        return self.pin_views(analysis, link, (data.get("t"), data.get("x"), data.get("y")))

    @ui_guard
    def on_load(self, request: gr.Request) -> Updates:
        params = dict(request.query_params) if request is not None else {}
        link = parse_clip_link(params, [Path(p).name for p in DEMO_CLIPS], VIDEO_MODELS)
        model = link.model or next(iter(VIDEO_MODELS))
        updates = {self.model: model}
        try:
            if link.key:
                analysis, key = self.current(None, link.key, model)
            else:
                path = str(DEMOS / link.clip) if link.clip else FIRST_CLIP
                analysis, key = self.video.analyse(path, model), None
                updates[self.clip] = path
        except CCNetError as err:
            return {**updates, **self.cleared(model, f"⚠️ {md_text(for_visitor(err))}")}
        placed = link.place(analysis.grid[0], analysis.size)
        pin = (placed.t, *placed.pixel) if placed.pixel else None
        if pin is None and not (link.clip or link.key or placed.problems or link.t is not None):
            pin = FIRST_PIN  # the first screen (a bare /video): a truck pixel of a frame without the panel
        updates.update(self.views(analysis, key, pin, placed.view, placed.display, placed.t))
        if placed.problems:
            updates[self.status] += " · ⚠️ link: " + md_text("; ".join(placed.problems))
        return updates


def add_video_page(demo: gr.Blocks, video: VideoExplorer, exports: Exports, budget: int = BUDGET_BYTES) -> VideoUI:
    """The /video page of `demo` (call outside its Blocks context)."""
    page = VideoUI(video, exports, budget)
    with demo.route("Video", PATH):
        page.layout()
        page.wire(demo)
    return page
