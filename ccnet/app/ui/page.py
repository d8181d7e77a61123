"""The page: layout and wiring. The attention viewer (viewer.js, viewer.css) draws every map in the
browser; the server answers uploads, pins, the cost panel and the API."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

import gradio as gr

from ccnet import limits
from ccnet.app.analysis import Display
from ccnet.app.browser_maps import BUDGET_BYTES
from ccnet.app.explorer import Explorer
from ccnet.app.exports import Exports
from ccnet.app.present import COST_HEADERS, TOPK_HEADERS, paper_size_figures
from ccnet.app.server.allocator import IdleRelease, use_allocator_from_environment
from ccnet.app.server.disk import Sweeper, app_folder, budget_bytes
from ccnet.app.server.fairness import cap_per_client
from ccnet.app.server.launch import launch_options
from ccnet.app.server.shutdown import serve_until_signal
from ccnet.app.server.uploads import refuse_bad_requests
from ccnet.app.ui.api import api_endpoints
from ccnet.app.ui.common import EXAMPLES, MODELS, VIEWS, upload_roots
from ccnet.app.ui.handlers import HINT, Handlers
from ccnet.app.ui.video_api import video_api_endpoints
from ccnet.app.ui.video_page import add_video_page
from ccnet.app.video import VideoExplorer
from ccnet.errors import CCNetError
from ccnet.nn.variants import BY_NAME
from ccnet.viz import charts
from ccnet.weights import family, presets

HERE = Path(__file__).parent
FAMILY_MENU = {  # the embedded model's siblings: every ablation arm's head on its frozen backbone
    family.sibling_name(arm): f"{family.sibling_name(arm)} · {BY_NAME[arm].description}" for arm in family.SIBLINGS}
LEAD = (
    "### CCNet Explorer · criss-cross attention, pixel by pixel\n"
    "One step looks along a cell's **row and column**; two steps **reach every cell**. Hover a panel: the car "
    "finds the far-away **blue sign** (car, not truck) in two steps, and every head below says what it makes of it. "
    "The embedded model knows **synthetic street scenes only**: for photos, pick a released model in the menu."
)
MORE = (
    "Each panel shows where one feature cell looks: **step 1** sees only its row and column, **step 2** does so "
    "again from every cell of that cross, and **composed** is the two together, which reaches the whole image "
    "(**reach** shows which cells each step can carry weight from, **readers** which cells read this one). Hover, "
    "use the arrow keys, click or tap to pin; on a phone, hold a finger still, then move it to explore. The heads "
    "strip shows every head of the family on the same backbone: **R = 1** cannot reach the sign and gets the trucks "
    "wrong, **no attention** fails on the vehicles, **non-local** gets them right at many times R = 2's memory.\n\n"
    "The embedded **default** model knows **synthetic street scenes only**; for your own photos choose a "
    "released model in the menu (ADE20K for everyday scenes, Cityscapes for streets)."
)
VIDEO_LINK = "**Clips**: [the video mode →](video) shows 3D criss-cross attention across frames."
VIEWER_ROOT = '<div class="ccv-root" data-testid="attention-viewer" tabindex="0"></div>'
# the viewer's script: the maps' arithmetic, the panels, the strips, then the events and the build
VIEWER_SCRIPT = "\n".join((HERE / name).read_text()
                          for name in ("shared.js", "maps.js", "viewer.js", "strips.js", "events.js"))


class ExplorerUI(Handlers):
    """The page around one Explorer (model and image caches shared by all visitors)."""

    def __init__(self, explorer: Explorer, exports: Exports, viewer_budget: int = BUDGET_BYTES) -> None:
        self.explorer, self.exports, self.viewer_budget = explorer, exports, viewer_budget
        self.models = ["default", *FAMILY_MENU, *presets.presets()]
        if explorer.default_model not in self.models:
            self.models.insert(0, explorer.default_model)
        explorer.models.restrict(self.models)
        self.example_keys = explorer.keep(EXAMPLES, now=False)  # analysed once, on first use, never evicted

    def menu(self) -> list[tuple[str, str]]:
        """(label, name) per model, grouped by dataset: the labels say what each model knows; events
        and the API keep the names."""
        found = presets.presets()
        ordered = sorted((p for p in found.values()), key=lambda p: (p.dataset, p.backbone, p.name))
        labels = {"default": "default · synthetic streets only", **FAMILY_MENU}  # fits the menu's box
        return [(labels.get(name, name), name) for name in self.models if name not in found] + [
            (p.label, p.name) for p in ordered if p.name in self.models]

    # ---- layout ---------------------------------------------------------------------------------
    def layout(self) -> None:
        gr.Markdown(LEAD, elem_id="intro")
        self.click_state, self.key_state = gr.State(None), gr.State(None)
        self.model_state = gr.State(self.explorer.default_model)
        with gr.Row(equal_height=False):  # the viewer first: on a phone it comes right after the intro
            with gr.Column(scale=3, min_width=300):
                self.status = gr.Markdown(self.explorer.status(), elem_id="status")
                self.domain_note = gr.Markdown(visible=False, elem_id="domain-note")
                self.photo_button = gr.Button(visible=False, elem_id="photo-model", size="sm", variant="primary")
                self.viewer = gr.HTML(None, html_template=VIEWER_ROOT, elem_id="viewer", padding=False,
                                      css_template=(HERE / "viewer.css").read_text(), js_on_load=VIEWER_SCRIPT)
                self.pixel = gr.Markdown(HINT, elem_id="pixel-info")
            with gr.Column(scale=1, min_width=260):
                self.image = gr.Image(label="image (PNG, JPEG, WebP, GIF)", type="filepath", height=170,
                                      sources=["upload", "clipboard"], elem_id="input")
                self.examples = gr.Examples(EXAMPLES, inputs=[self.image], label="examples (synthetic street scenes)",
                                            examples_per_page=8, cache_examples=False, api_visibility="private")
                gr.Markdown(VIDEO_LINK, elem_id="video-link")
                self.model = gr.Dropdown(
                    self.menu(), value=self.explorer.default_model, label="model", elem_id="model",
                    info="released models are downloaded once, then cached (≈ sizes from the parameter count)")
                self.size = gr.Radio(
                    [("interactive (≤ 0.26 MP, whole image)", "interactive"), ("full protocol", "full")],
                    value=self.explorer.default_size, label="analysis size (released models)", elem_id="analysis-size",
                    info="interactive: seconds on a CPU; full: the preset's own test protocol, as in its mIoU",
                    interactive=self.explorer.default_model in presets.presets())
                self.legend = gr.HTML(elem_id="legend")
        self.details_layout()
        self.cost_layout()
        self.downloads_layout()

    def details_layout(self) -> None:
        with gr.Accordion("How to read this page", open=False, elem_id="intro-more"):
            gr.Markdown(MORE)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                self.k = gr.Slider(1, 20, value=Display.k, step=1, label="top-k cells of the highlighted map "
                                   "(click a panel's title to highlight it)", elem_id="topk-k")
                self.topk = gr.Dataframe(headers=TOPK_HEADERS, label="top-k attended cells of the pinned pixel",
                                         elem_id="topk", interactive=False, wrap=True,  # no header split mid-word
                                         column_widths=["60px", "110px", "110px", "90px", "140px"])
            with gr.Column(scale=3, min_width=320):
                self.chart = gr.Plot(label="weights along the pinned cell's row and column", elem_id="cross-chart")
        with gr.Row(equal_height=False, elem_id="compare-row"):
            with gr.Column(scale=2, min_width=280):
                self.compare_image = gr.Image(label="the non-local head's map of the pinned cell (same backbone)",
                                              elem_id="nonlocal-map", interactive=False, height=220, visible=False)
            with gr.Column(scale=3, min_width=280):
                self.compare_text = gr.Markdown(elem_id="compare-text", visible=False)
        with gr.Accordion("pinned cell as JSON (full maps: API /attention or the npz)", open=False):
            self.summary = gr.Code(language="json", elem_id="attention-json", interactive=False, max_lines=16)

    def cost_layout(self) -> None:
        gr.Markdown("## Cost at this image's feature size: criss-cross vs non-local")
        self.cost_text = gr.Markdown(elem_id="cost-note")
        self.cost_table = gr.Dataframe(headers=COST_HEADERS, label="every head at the analysed image's feature grid",
                                       elem_id="cost-table", interactive=False, wrap=True)
        self.cost_chart = gr.Plot(label="growth with the input size", elem_id="cost-chart")
        figures = paper_size_figures()
        if figures:
            gr.Plot(charts.paper_bars(figures), label="criss-cross against non-local at the paper's size",
                    elem_id="paper-bars")

    def downloads_layout(self) -> None:
        gr.Markdown("## Downloads")
        with gr.Row():
            button = dict(size="sm", interactive=False)
            self.mask_file = gr.DownloadButton("mask PNG (class indices)", elem_id="dl-mask", **button)
            self.colour_file = gr.DownloadButton("mask PNG (colours)", elem_id="dl-colour", **button)
            self.overlay_file = gr.DownloadButton("overlay PNG", elem_id="dl-overlay", **button)
            self.npz_file = gr.DownloadButton("attention maps (npz)", elem_id="dl-npz", **button)
            self.csv_file = gr.DownloadButton("cost table (CSV)", elem_id="dl-csv", **button)
        gr.Markdown(f"Images are downscaled to {limits.MAX_SIDE} px on their longest side; at least "
                    f"{limits.MIN_SIDE} px per side, at most {limits.MAX_ASPECT}:1, files up to "
                    f"{limits.FILE_BYTES / limits.MiB:g} MiB.")

    # ---- wiring ---------------------------------------------------------------------------------
    @property
    def pin_views_out(self) -> list:
        """What a pin writes."""
        return [self.pixel, self.topk, self.chart, self.summary, self.npz_file, self.click_state, self.status,
                self.compare_image, self.compare_text,
                self.viewer]  # the viewer only when it holds no maps (over the budget)

    @property
    def image_views_out(self) -> list:
        """What a new image (or model, or link) writes."""
        return [*self.pin_views_out, self.legend, self.key_state, self.image, self.mask_file,
                self.colour_file, self.overlay_file, self.domain_note, self.photo_button]

    def wire(self, demo: gr.Blocks) -> None:
        private = dict(api_visibility="private", preprocess=False)  # preprocess: see common.upload_path
        source = [self.image, self.key_state, self.model, self.size]
        cost = dict(fn=self.on_cost, inputs=source, concurrency_id="cost", **private,
                    outputs=[self.cost_table, self.cost_chart, self.cost_text, self.csv_file, self.status])
        for trigger in (self.image.upload, self.examples.load_input_event.then):
            trigger(self.on_upload, [self.image, self.model, self.size], self.image_views_out, concurrency_id=VIEWS,
                    **private).then(**cost)
        # the clear event still carries the image it removes: taking it as input brought it back (bug a)
        self.image.clear(self.on_clear, [self.model], [*self.image_views_out, *cost["outputs"][:4]],
                         concurrency_id=VIEWS, **private)
        quiet = dict(show_progress_on=[self.pixel, self.topk])  # no spinner over the viewer on a pin
        self.viewer.click(self.on_pin, [*source, self.k], self.pin_views_out, concurrency_id=VIEWS, **quiet,
                          **private)
        self.k.change(self.on_topk, [*source, self.click_state, self.k], self.pin_views_out,
                      concurrency_id=VIEWS, trigger_mode="always_last", **quiet, **private)
        # a switch shows its progress on the status line only: a failed one leaves the page as it was
        quiet_switch = dict(show_progress_on=[self.status])
        views = dict(fn=self.on_model_views, inputs=[self.model, self.model_state, self.image, self.key_state,
                                                     self.size, self.click_state],
                     outputs=[self.model, self.model_state, self.size, *self.image_views_out], concurrency_id=VIEWS,
                     **quiet_switch, **private)
        loading = dict(outputs=[self.model, self.status], concurrency_id=MODELS, **quiet_switch, **private)
        self.model.select(self.on_model_load, [self.model, self.model_state], **loading).then(**views).then(**cost)
        self.photo_button.click(self.on_photo_model_load, [self.model_state], **loading).then(**views).then(**cost)
        self.size.input(self.on_size, [self.size, self.image, self.key_state, self.model, self.click_state],
                        self.image_views_out,
                        concurrency_id=VIEWS, **private).then(**cost)
        demo.load(self.on_load, None, [self.model, self.model_state, self.size, *self.image_views_out],
                  concurrency_id=VIEWS, api_visibility="private").then(**cost)


def _keep_gradio_files_in(folder: Path) -> None:
    """Gradio modules imported before the app's folder existed read GRADIO_TEMP_DIR once, at import
    (the MCP bridge saves a client's base64 images there): point them at the folder too, so that the
    order of imports does not decide where files land."""
    for name in ("gradio.mcp", "gradio.route_utils", "gradio.routes", "gradio.screen_recording_utils"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "DEFAULT_TEMP_DIR"):
            module.DEFAULT_TEMP_DIR = str(folder)


def build_app(explorer: Explorer | None = None, exports: Exports | None = None,
              viewer_budget: int = BUDGET_BYTES) -> gr.Blocks:
    """The Blocks app around one Explorer (model cache and image cache shared by all visitors);
    `viewer_budget` bounds the bytes of maps the page receives per image (beyond: server pins)."""
    folder = app_folder()  # first: the Blocks read GRADIO_TEMP_DIR, which this points into the app's folder
    _keep_gradio_files_in(folder.gradio)
    page = ExplorerUI(explorer or Explorer(os.environ.get("CCNET_MODEL", "default")),
                      exports or Exports(folder.results), viewer_budget)
    # every pin sends new files through Gradio's cache: clear files older than an hour, hourly
    expiry = (limits.UPLOAD_MAX_AGE_S, limits.UPLOAD_MAX_AGE_S)
    with gr.Blocks(title="CCNet Explorer", analytics_enabled=False, delete_cache=expiry) as demo:
        page.layout()
        page.wire(demo)
        api_endpoints(page.explorer, page.exports)
        video = VideoExplorer(page.explorer.device, page.explorer.amp)
        video_api_endpoints(video, page.exports)
    add_video_page(demo, video, page.exports, viewer_budget)  # /video: clips (ccnet/app/ui/video_page.py)
    # api_open=False: Gradio's /run and /api routes, which skip the queue, are closed whatever SPACE_ID says
    demo.queue(default_concurrency_limit=1, max_size=limits.QUEUE_SIZE, api_open=False)
    cap_per_client(demo._queue)  # one client cannot fill the queue everyone shares (ccnet/app/server/fairness.py)
    # well-formed calls naming only uploaded files (Gradio itself refuses any other path, with a traceback)
    refuse_bad_requests(demo._queue, lambda: upload_roots()[:1])
    return demo


def _close(demo: gr.Blocks) -> None:
    """Close the server; open connections (an upload hanging mid-body) hold it 1 s at most."""
    if demo.server is not None:
        demo.server.config.timeout_graceful_shutdown = 1
    demo.close()


def main(argv: list[str] | None = None) -> None:
    """`python app.py [--model NAME] [--device auto|cpu|cuda] [--amp fp16|bf16]`: serves until SIGINT or
    SIGTERM, then removes the app's folder (uploads, Gradio's cache, results)."""
    parser = argparse.ArgumentParser(description="CCNet Explorer web app")
    parser.add_argument("--model", default=os.environ.get("CCNET_MODEL", "default"),
                        help="start-up model: 'default', a preset name or a checkpoint file (env CCNET_MODEL)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--amp", choices=("fp16", "bf16"), help="autocast dtype on CUDA")
    args = parser.parse_args(argv)
    mode = use_allocator_from_environment()  # CCNET_ALLOCATOR=kept: freed memory kept for the next run
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folder = app_folder()

    def start(stops: ExitStack) -> None:
        try:
            budget = budget_bytes()
            explorer = Explorer(args.model, args.device, args.amp)
            explorer.models.model()  # load now: a bad --model fails here, not on the first click
        except CCNetError as err:
            raise SystemExit(f"error: {err}") from None
        # the examples' analyses, once, in the background: every visitor's first example is instant
        threading.Thread(target=explorer.keep, args=(EXAMPLES,), daemon=True, name="warm-examples").start()
        demo = build_app(explorer)
        # the sweeper spares the examples Gradio cached at build time; the upload limit shares its byte count
        sweeper = Sweeper(folder, budget, keep=lambda: set().union(
            *(getattr(block, "keep_in_cache", ()) for block in demo.blocks.values()))).start()
        stops.callback(sweeper.stop)
        stops.callback(_close, demo)  # before the launch: the server answers before the launch returns
        # mcp_server: segment, attention and cost are also tools for MCP clients (gradio's mcp extra)
        demo.launch(footer_links=["api"], mcp_server=True, prevent_thread_lock=True,
                    **launch_options(sweeper))
        if mode == "kept":  # memory the allocator keeps for the next run goes back once the app is idle
            stops.callback(IdleRelease().start().stop)

    serve_until_signal(start, folder.remove)
