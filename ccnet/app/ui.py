"""The Gradio page: layout and wiring only; the only module of the package that imports Gradio.

Every handler is a method of `ExplorerUI` that calls `Explorer` (tested without Gradio) and
returns a dict keyed by the components it changes, so adding an output is one key in one dict
(plus the component in its output group); components missing from the dict keep their value.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
from collections.abc import Callable
from typing import Any

import gradio as gr

from ccnet.app.explorer import Display, Explorer
from ccnet.app.exports import Exports
from ccnet.app.present import (
    COST_HEADERS,
    TOPK_HEADERS,
    compact_json,
    cost_note,
    cost_rows,
    legend_html,
    pixel_text,
    topk_rows,
)
from ccnet.app.uploads import checked_upload
from ccnet.errors import CCNetError
from ccnet.inference.images import MAX_ASPECT, MAX_SIDE, MIN_SIDE
from ccnet.project import DEMOS
from ccnet.viz import charts
from ccnet.viz.pictures import COLORMAPS, SCALES, UPSAMPLING, legend
from ccnet.weights import presets

log = logging.getLogger("ccnet.app")
EXAMPLES = sorted(str(p) for p in DEMOS.glob("*.png") if not p.stem.endswith("_label"))
MAX_FILE_SIZE = "20mb"  # uploads above this are refused by Gradio before they reach the server's disk
VIEWS = "views"  # concurrency id of every event that writes the segmentation or attention views
CLICK_HINT = "Click a pixel of the segmentation to see its attention."
INTRO = (
    "# CCNet Explorer\n"
    "Upload a street scene (or pick an example), then **click a pixel**: you see where its feature cell "
    "looks at each recurrence step of criss-cross attention (its row and column), the composed full-image "
    "map after both steps, and what criss-cross attention costs against a non-local block at this size."
)
Updates = dict[Any, Any]  # component -> new value


def upload_path(payload: dict | str | None) -> str | None:
    """The uploaded file's path on the server. Events take the image unprocessed (preprocess=False)
    so that a broken or odd file reaches ccnet.inference.images and gets its one-line message:
    Gradio's own image decoding would fail first, with a bare "Error". So the path is checked
    here: only Gradio's upload folder and the bundled examples may be read."""
    return checked_upload(payload, (gr.utils.get_upload_folder(), DEMOS))


def ui_guard(fn: Callable[..., Updates]) -> Callable[..., Updates]:
    """UI handlers: a CCNetError becomes a warning toast with its message, anything else is logged
    and shown as a short generic line; the outputs keep their values (an empty dict)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Updates:
        try:
            return fn(*args, **kwargs)
        except CCNetError as err:
            gr.Warning(str(err))
        except Exception:
            log.exception("handler %s failed", fn.__name__)
            gr.Warning("Something went wrong on the server (details in its log); try another image.")
        return {}

    return wrapper


def api_guard(fn: Callable) -> Callable:
    """API endpoints: the client gets the message of a CCNetError (or a generic one) as its error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CCNetError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception:
            log.exception("endpoint %s failed", fn.__name__)
            raise gr.Error("internal error (details in the server log)", print_exception=False) from None

    return wrapper


def display(view: str | None, cmap: str, clip: float, scale: str, upsampling: str, grid_lines: bool, k: float,
            alpha: float) -> Display:
    """The display controls' values as one Display."""
    return Display(view or "composed", cmap, float(clip), scale, upsampling, bool(grid_lines), int(k), float(alpha))


class ExplorerUI:
    """The page around one Explorer (model and image caches shared by all visitors). The layout
    methods create the components as attributes; the handlers below return {component: value}."""

    def __init__(self, explorer: Explorer, exports: Exports) -> None:
        self.explorer, self.exports = explorer, exports
        self.models = ["default", *presets.presets()]
        if explorer.default_model not in self.models:
            self.models.insert(0, explorer.default_model)
        explorer.restrict_models(self.models)

    # ---- handlers -------------------------------------------------------------------------------
    def segment_views(self, path: str, model: str, alpha: float, view: str) -> Updates:
        """Everything an analysed image shows before a click; the attention views are emptied."""
        analysis = self.explorer.analyse(path, model)
        loaded = self.explorer.model(model)[0]
        picture = self.exports.picture(analysis, "overlay", self.explorer.overlay(analysis, alpha))
        return {
            self.overlay: picture, self.legend: legend_html(analysis, loaded.classes, loaded.palette),
            self.status: self.explorer.status(analysis), self.pixel: CLICK_HINT,
            self.view: gr.update(choices=analysis.views, value=view if view in analysis.views else "composed"),
            self.mask_file: self.exports.mask_png(analysis), self.overlay_file: picture, self.click_state: None,
            **dict.fromkeys(self.attention_views),
        }

    def cleared(self, model: str, message: str) -> Updates:
        """No image (or a refused one): every view empty, the message in the status and pixel lines."""
        return {
            self.status: self.explorer.status(None, model) + f" · {message}", self.pixel: message,
            self.legend: "", self.image: None, self.mask_file: None, self.overlay: None, self.overlay_file: None,
            self.click_state: None, **dict.fromkeys(self.attention_views),
        }

    @ui_guard
    def on_upload(self, path: dict | None, model: str, alpha: float, view: str) -> Updates:
        path = upload_path(path)
        if path is None:
            return self.cleared(model, "Upload an image or pick an example.")
        try:
            return self.segment_views(path, model, alpha, view)
        except CCNetError as err:  # also empty the input, so the cost step that follows stays quiet
            gr.Warning(str(err))
            return self.cleared(model, f"⚠️ {err}")

    def explain_views(self, path: str, model: str, click: tuple[int, int], shown: Display) -> Updates:
        """The attention views of one click."""
        explanation = self.explorer.explain(path, *click, model=model, display=shown)
        pictures = self.explorer.render(explanation, shown)
        overlay_png, heatmap_png, steps_png = (self.exports.picture(explanation.analysis, name, pictures[name])
                                               for name in ("overlay", "heatmap", "steps"))
        classes = self.explorer.classes(model)
        summary = {k: v for k, v in explanation.to_json(classes).items() if k not in ("steps", "composed")}
        return {
            self.overlay: overlay_png, self.pixel: pixel_text(explanation, classes), self.heatmap: heatmap_png,
            self.steps: steps_png, self.chart: pictures["chart"], self.topk: topk_rows(explanation),
            self.summary: compact_json(summary), self.npz_file: self.exports.attention_npz(explanation),
            self.click_state: list(click), self.overlay_file: overlay_png,
        }

    @ui_guard
    def on_click(self, path: dict | None, model: str, view: str, cmap: str, clip: float, scale: str,
                 upsampling: str, grid_lines: bool, k: float, alpha: float, evt: gr.SelectData) -> Updates:
        x, y = evt.index
        shown = display(view, cmap, clip, scale, upsampling, grid_lines, k, alpha)
        return self.explain_views(upload_path(path), model, (x, y), shown)

    @ui_guard
    def on_display(self, path: dict | None, model: str, click: list | None, view: str, cmap: str, clip: float,
                   scale: str, upsampling: str, grid_lines: bool, k: float, alpha: float) -> Updates:
        path = upload_path(path)
        if not click or path is None:
            return {}
        shown = display(view, cmap, clip, scale, upsampling, grid_lines, k, alpha)
        return self.explain_views(path, model, tuple(click), shown)

    @ui_guard
    def on_opacity(self, path: dict | None, model: str, click: list | None, alpha: float) -> Updates:
        path = upload_path(path)
        if path is None:
            return {}
        analysis = self.explorer.analyse(path, model)
        picture = self.exports.picture(analysis, "overlay",
                                       self.explorer.overlay(analysis, alpha, tuple(click) if click else None))
        return {self.overlay: picture, self.overlay_file: picture}

    @ui_guard
    def on_cost(self, path: dict | None, model: str) -> Updates:
        path = upload_path(path)
        if path is None:
            return {self.cost_table: None, self.cost_chart: None, self.cost_text: "", self.csv_file: None}
        measured = self.explorer.cost(path, model)
        return {
            self.cost_table: cost_rows(measured), self.cost_text: cost_note(measured),
            self.cost_chart: charts.cost_growth(self.explorer.cost_growth(measured)),
            self.csv_file: self.exports.cost_csv(self.explorer.analyse(path, model), measured),
        }

    @ui_guard
    def on_model(self, name: str, previous: str | None, path: dict | None, alpha: float, view: str,
                 progress: gr.Progress = gr.Progress()) -> Updates:  # noqa: B008 - Gradio's progress idiom
        path = upload_path(path)

        def report(done: int, total: int | None) -> None:
            progress(done / total if total else None, desc=f"downloading {name}: {done / 2**20:.0f} MiB")

        log.info("model switch to %s (from %s)", name, previous)
        try:
            self.explorer.model(name, progress=report)
        except CCNetError as err:
            gr.Warning(f"{err} — still using {previous or self.explorer.default_model}")
            return {self.model: gr.update(value=previous or self.explorer.default_model)}
        switched = {self.model: name, self.model_state: name}
        if path is None:
            return {**switched, self.status: self.explorer.status(None, name)}
        return {**switched, **self.segment_views(path, name, alpha, view)}

    # ---- layout ---------------------------------------------------------------------------------
    def layout(self) -> None:
        gr.Markdown(INTRO)
        self.status = gr.Markdown(self.explorer.status(), elem_id="status")
        self.click_state = gr.State(None)
        self.model_state = gr.State(self.explorer.default_model)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                self.image = gr.Image(label="image (PNG, JPEG, WebP, GIF)", type="filepath",
                                      sources=["upload", "clipboard"], elem_id="input", height=300)
                self.model = gr.Dropdown(
                    self.models, value=self.explorer.default_model, label="model", elem_id="model",
                    info="`default` is embedded; released presets are downloaded once, then cached")
                self.examples = gr.Examples(EXAMPLES, inputs=[self.image], label="examples (synthetic street scenes)",
                                            examples_per_page=8, cache_examples=False, api_visibility="private")
            with gr.Column(scale=3, min_width=300):
                self.overlay = gr.Image(label="segmentation: click a pixel", type="numpy", format="png",
                                        interactive=False, elem_id="overlay", buttons=["fullscreen"])
                self.opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="overlay opacity", elem_id="opacity")
                self.legend = gr.HTML(elem_id="legend")
                self.pixel = gr.Markdown(CLICK_HINT, elem_id="pixel-info")
        self.attention_layout()
        self.cost_layout()
        gr.Markdown("## Downloads")
        with gr.Row():
            self.mask_file = gr.DownloadButton("mask PNG", elem_id="dl-mask", size="sm")
            self.overlay_file = gr.DownloadButton("overlay PNG", elem_id="dl-overlay", size="sm")
            self.npz_file = gr.DownloadButton("attention maps (npz)", elem_id="dl-npz", size="sm")
            self.csv_file = gr.DownloadButton("cost table (CSV)", elem_id="dl-csv", size="sm")
        gr.Markdown(f"Images are downscaled to {MAX_SIDE} px on their longest side; at least {MIN_SIDE} px per "
                    f"side, at most {MAX_ASPECT}:1, files up to {MAX_FILE_SIZE}.")

    def attention_layout(self) -> None:
        gr.Markdown("## Attention of the clicked pixel")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                self.heatmap = gr.Image(label="heat map (pixel ◯, top-k cells numbered)", type="numpy", format="png",
                                        interactive=False, elem_id="heatmap", buttons=["fullscreen", "download"])
            with gr.Column(scale=2, min_width=260):
                self.view = gr.Radio(["step 1", "step 2", "composed"], value="composed", label="map", elem_id="view",
                                     info="each step's weights (the pixel's row and column) or both composed")
                self.cmap = gr.Dropdown(list(COLORMAPS), value="magma", label="colormap", elem_id="cmap")
                self.clip = gr.Slider(0.01, 1.0, value=0.5, step=0.01, label="clip above (× the map's maximum)",
                                      elem_id="clip", info="the paper's figures saturate the largest weights")
                with gr.Row():
                    self.scale = gr.Radio(list(SCALES), value="linear", label="scale", elem_id="scale")
                    self.upsampling = gr.Radio(list(UPSAMPLING), value="nearest", label="upsampling",
                                               elem_id="upsampling")
                with gr.Row():
                    self.grid_lines = gr.Checkbox(False, label="show the feature grid", elem_id="grid")
                    self.k = gr.Slider(1, 20, value=5, step=1, label="top-k", elem_id="topk-k")
        self.steps = gr.Image(label="every step and the composed map", type="numpy", format="png", interactive=False,
                              elem_id="steps", buttons=["fullscreen", "download"])
        self.chart = gr.Plot(label="weights along the row and column", elem_id="cross-chart")
        with gr.Row(equal_height=False):
            self.topk = gr.Dataframe(headers=TOPK_HEADERS, label="top-k attended cells", elem_id="topk",
                                     interactive=False, wrap=True, min_width=340)
            self.summary = gr.Code(label="clicked cell as JSON (full maps: API /attention or the npz)",
                                   language="json", elem_id="attention-json", interactive=False, max_lines=16,
                                   min_width=340)

    def cost_layout(self) -> None:
        gr.Markdown("## Cost at this image's feature size: criss-cross vs non-local")
        self.cost_text = gr.Markdown(elem_id="cost-note")
        self.cost_table = gr.Dataframe(headers=COST_HEADERS, label="RCCA R=1, R=2 and the non-local block",
                                       elem_id="cost-table", interactive=False, wrap=True)
        self.cost_chart = gr.Plot(label="growth with the input size", elem_id="cost-chart")

    # ---- wiring ---------------------------------------------------------------------------------
    @property
    def attention_views(self) -> list:
        """The views of a click's attention, emptied when the image changes."""
        return [self.heatmap, self.steps, self.chart, self.topk, self.summary, self.npz_file]

    @property
    def click_views(self) -> list:
        """What a click writes."""
        return [self.overlay, self.pixel, *self.attention_views, self.click_state, self.overlay_file]

    @property
    def image_views(self) -> list:
        """What a new image (or model) writes: the click's views emptied, plus the segmentation."""
        return [*self.click_views, self.image, self.legend, self.status, self.view, self.mask_file]

    def wire(self) -> None:
        display_inputs = [self.view, self.cmap, self.clip, self.scale, self.upsampling, self.grid_lines, self.k,
                          self.opacity]
        cost_views = [self.cost_table, self.cost_chart, self.cost_text, self.csv_file]
        private = dict(api_visibility="private", preprocess=False)  # preprocess: see upload_path
        for trigger in (self.image.upload, self.examples.load_input_event.then, self.image.clear):
            trigger(self.on_upload, [self.image, self.model, self.opacity, self.view], self.image_views,
                    concurrency_id=VIEWS, **private).then(
                self.on_cost, [self.image, self.model], cost_views, concurrency_id="cost", **private)
        self.overlay.select(self.on_click, [self.image, self.model, *display_inputs], self.click_views,
                            concurrency_id=VIEWS, **private)
        gr.on([self.view.input, self.cmap.input, self.clip.release, self.scale.input, self.upsampling.input,
               self.grid_lines.input, self.k.release],
              self.on_display, [self.image, self.model, self.click_state, *display_inputs], self.click_views,
              concurrency_id=VIEWS, trigger_mode="always_last", **private)
        self.opacity.change(self.on_opacity, [self.image, self.model, self.click_state, self.opacity],
                            [self.overlay, self.overlay_file], concurrency_id=VIEWS, trigger_mode="always_last",
                            **private)
        self.model.select(self.on_model, [self.model, self.model_state, self.image, self.opacity, self.view],
                          [self.model, self.model_state, *self.image_views], concurrency_id=VIEWS, **private).then(
            self.on_cost, [self.image, self.model], cost_views, concurrency_id="cost", **private)


def build_app(explorer: Explorer | None = None, exports: Exports | None = None) -> gr.Blocks:
    """The Blocks app around one Explorer (model cache and image cache shared by all visitors)."""
    ui = ExplorerUI(explorer or Explorer(os.environ.get("CCNET_MODEL", "default")), exports or Exports())
    # every click sends new pictures through Gradio's cache: clear files older than an hour, hourly
    with gr.Blocks(title="CCNet Explorer", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        ui.layout()
        ui.wire()
        api_endpoints(ui.explorer)
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


def api_endpoints(explorer: Explorer) -> None:
    """/segment, /attention and /cost for gradio_client, on hidden components. Coordinates are
    pixels of the analysed image (the upload, downscaled only above the size limit)."""
    with gr.Group(visible=False):
        image_in = gr.Image(label="image", type="filepath")
        x_in, y_in = gr.Number(label="x", precision=0), gr.Number(label="y", precision=0)
        model_in = gr.Textbox("", label="model", info="empty: the app's current model")
        overlay, heatmap, steps = gr.Image(format="png"), gr.Image(format="png"), gr.Image(format="png")
        info, attention_json, cost_json = gr.JSON(), gr.JSON(), gr.JSON()

    @api_guard
    def segment(image: dict | str | None, model: str) -> tuple:
        analysis = explorer.analyse(upload_path(image), model or None)
        loaded = explorer.model(analysis.model)[0]
        return explorer.overlay(analysis), {
            "model": analysis.model, "image_size": list(analysis.size), "grid": list(analysis.grid),
            "seconds": analysis.seconds, "device": analysis.device, "note": analysis.note,
            "legend": legend(analysis.mask, loaded.classes, loaded.palette),
        }

    @api_guard
    def attention(image: dict | str | None, x: float | None, y: float | None, model: str) -> tuple:
        image = upload_path(image)
        if x is None or y is None:
            raise CCNetError("give the pixel as x (column) and y (row)")
        shown = Display()
        explanation = explorer.explain(image, x, y, model=model or None, display=shown)
        pictures = explorer.render(explanation, shown)
        return pictures["heatmap"], pictures["steps"], explanation.to_json(explorer.classes(explanation.analysis.model))

    @api_guard
    def cost(image: dict | str | None, model: str) -> dict:
        return explorer.cost(upload_path(image), model or None)

    gr.on([], segment, [image_in, model_in], [overlay, info], api_name="segment", concurrency_id=VIEWS,
          preprocess=False)
    gr.on([], attention, [image_in, x_in, y_in, model_in], [heatmap, steps, attention_json], api_name="attention",
          concurrency_id=VIEWS, preprocess=False)
    gr.on([], cost, [image_in, model_in], [cost_json], api_name="cost", concurrency_id="cost", preprocess=False)


def main(argv: list[str] | None = None) -> None:
    """`python app.py [--model NAME] [--device auto|cpu|cuda] [--amp fp16|bf16]`."""
    parser = argparse.ArgumentParser(description="CCNet Explorer web app")
    parser.add_argument("--model", default=os.environ.get("CCNET_MODEL", "default"),
                        help="start-up model: 'default', a preset name or a checkpoint file (env CCNET_MODEL)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--amp", choices=("fp16", "bf16"), help="autocast dtype on CUDA")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        explorer = Explorer(args.model, args.device, args.amp)
        explorer.model()  # load now: a bad --model fails here, not on the first click
    except CCNetError as err:
        raise SystemExit(f"error: {err}") from None
    build_app(explorer).launch(max_file_size=MAX_FILE_SIZE, ssr_mode=False, footer_links=["api"])

