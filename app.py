"""CCNet Explorer web app: upload, click a pixel, see its criss-cross attention and the cost.

This file only wires Gradio components to ccnet.app.explorer (which is tested without Gradio).
`python app.py [--model NAME] [--device auto|cpu|cuda]`; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
choose the address, CCNET_MODEL the start-up model (default: the embedded `default`).
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no phoning home
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from ccnet.viz import charts  # noqa: E402

from ccnet.weights import presets as zoo  # noqa: E402
from ccnet.errors import CCNetError  # noqa: E402
from ccnet.app.uploads import checked_upload  # noqa: E402
from ccnet.inference.images import MAX_ASPECT, MAX_SIDE, MIN_SIDE  # noqa: E402
from ccnet.app.explorer import (  # noqa: E402
    COST_HEADERS, TOPK_HEADERS, Display, Explorer, Exports, compact_json, cost_note, cost_rows, legend_html,
    pixel_text, topk_rows,
)
from ccnet.viz.pictures import COLORMAPS, SCALES, UPSAMPLING, legend  # noqa: E402

log = logging.getLogger("ccnet.app")
ROOT = Path(__file__).resolve().parent
DEMOS = sorted(str(p) for p in (ROOT / "demos").glob("*.png") if not p.stem.endswith("_label"))
MAX_FILE_SIZE = "20mb"  # uploads above this are refused by Gradio before they reach the server's disk
VIEWS = "views"  # concurrency id of every event that writes the segmentation or attention views
INTRO = (
    "# CCNet Explorer\n"
    "Upload a street scene (or pick an example), then **click a pixel**: you see where its feature cell "
    "looks at each recurrence step of criss-cross attention (its row and column), the composed full-image "
    "map after both steps, and what criss-cross attention costs against a non-local block at this size."
)


def upload_path(payload: dict | None) -> str | None:
    """The uploaded file's path on the server. Events take the image unprocessed (preprocess=False)
    so that a broken or odd file reaches ccnet.inference.images and gets its one-line message: Gradio's own
    image decoding would fail first, with a bare "Error". So the path is checked here: only
    Gradio's upload folder and the bundled examples may be read."""
    return checked_upload(payload, (gr.utils.get_upload_folder(), ROOT / "demos"))


def ui_guard(fn):  # noqa: ANN001, ANN201
    """UI handlers: a CCNetError becomes a warning toast with its message, anything else is logged
    and shown as a short generic line; the outputs keep their values."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return fn(*args, **kwargs)
        except CCNetError as err:
            gr.Warning(str(err))
        except Exception:  # noqa: BLE001 - the server must keep serving
            log.exception("handler %s failed", fn.__name__)
            gr.Warning("Something went wrong on the server (details in its log); try another image.")
        return _skips(wrapper.n_outputs)

    return wrapper


def api_guard(fn):  # noqa: ANN001, ANN201
    """API endpoints: the client gets the message of a CCNetError (or a generic one) as its error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return fn(*args, **kwargs)
        except CCNetError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception:  # noqa: BLE001
            log.exception("endpoint %s failed", fn.__name__)
            raise gr.Error("internal error (details in the server log)", print_exception=False) from None

    return wrapper


def _skips(count: int):  # noqa: ANN202
    return gr.skip() if count == 1 else tuple(gr.skip() for _ in range(count))


def build_app(explorer: Explorer | None = None, exports: Exports | None = None) -> gr.Blocks:
    """The Blocks app around one Explorer (model cache and image cache shared by all visitors)."""
    explorer = explorer or Explorer(os.environ.get("CCNET_MODEL", "default"))
    exports = exports or Exports()
    models = ["default", *zoo.presets()]
    if explorer.default_model not in models:
        models.insert(0, explorer.default_model)
    explorer.restrict_models(models)

    def display(view, cmap, clip, scale, upsampling, grid_lines, k, alpha) -> Display:  # noqa: ANN001
        return Display(view or "composed", cmap, float(clip), scale, upsampling, bool(grid_lines), int(k), float(alpha))

    # ---- handlers (thin: each calls ccnet.app.explorer) -----------------------------------------------
    def segment_views(path, model, alpha, view):  # noqa: ANN001, ANN202
        analysis = explorer.segment(path, model)
        loaded = explorer.model(model)[0]
        picture = exports.picture(analysis, "overlay", explorer.overlay(analysis, alpha))
        views = analysis.views
        return (
            picture, legend_html(analysis, loaded.classes, loaded.palette), explorer.status(analysis),
            "Click a pixel of the segmentation to see its attention.",
            gr.update(choices=views, value=view if view in views else "composed"),
            exports.mask_png(analysis), picture, None,
            None, None, None, None, None, None, gr.skip(),
        )

    @ui_guard
    def on_upload(path, model, alpha, view):  # noqa: ANN001, ANN202
        path = upload_path(path)
        if path is None:
            return _cleared(model, "Upload an image or pick an example.")
        try:
            return segment_views(path, model, alpha, view)
        except CCNetError as err:  # also empty the input, so the cost step that follows stays quiet
            gr.Warning(str(err))
            return _cleared(model, f"⚠️ {err}")

    def _cleared(model: str, message: str):  # noqa: ANN202
        return (None, "", explorer.status(None, model) + f" · {message}", message, gr.skip(),
                None, None, None, None, None, None, None, None, None, None)

    @ui_guard
    def on_click(path, model, view, cmap, clip, scale, upsampling, grid_lines, k, alpha,  # noqa: ANN001, ANN202
                 evt: gr.SelectData):
        path = upload_path(path)
        x, y = evt.index
        return explain_views(path, model, (x, y), display(view, cmap, clip, scale, upsampling, grid_lines, k, alpha))

    def explain_views(path, model, click, shown: Display):  # noqa: ANN001, ANN202
        explanation = explorer.explain(path, *click, model=model, display=shown)
        pictures = explorer.render(explanation, shown)
        overlay_png, heatmap_png, steps_png = (exports.picture(explanation.analysis, name, pictures[name])
                                               for name in ("overlay", "heatmap", "steps"))
        classes = explorer.classes(model)
        summary = compact_json({k: v for k, v in explanation.to_json(classes).items() if k not in ("steps", "composed")})
        return (
            overlay_png, pixel_text(explanation, classes), heatmap_png, steps_png,
            pictures["chart"], topk_rows(explanation), summary, exports.attention_npz(explanation),
            list(click), overlay_png,
        )

    @ui_guard
    def on_display(path, model, click, view, cmap, clip, scale, upsampling, grid_lines, k, alpha):  # noqa: ANN001, ANN202
        path = upload_path(path)
        if not click or path is None:
            return _skips(10)
        return explain_views(path, model, tuple(click), display(view, cmap, clip, scale, upsampling, grid_lines, k, alpha))

    @ui_guard
    def on_opacity(path, model, click, alpha):  # noqa: ANN001, ANN202
        path = upload_path(path)
        if path is None:
            return gr.skip(), gr.skip()
        analysis = explorer.segment(path, model)
        picture = exports.picture(analysis, "overlay", explorer.overlay(analysis, alpha, tuple(click) if click else None))
        return picture, picture

    @ui_guard
    def on_cost(path, model):  # noqa: ANN001, ANN202
        path = upload_path(path)
        if path is None:
            return None, None, "", None
        measured = explorer.cost(path, model)
        return (cost_rows(measured), charts.cost_growth(explorer.cost_growth(measured)), cost_note(measured),
                exports.cost_csv(explorer.segment(path, model), measured))

    @ui_guard
    def on_model(name, previous, path, alpha, view, progress=gr.Progress()):  # noqa: ANN001, ANN202, B008
        path = upload_path(path)

        def report(done: int, total: int | None) -> None:
            progress(done / total if total else None, desc=f"downloading {name}: {done / 2**20:.0f} MiB")

        log.info("model switch to %s (from %s)", name, previous)
        try:
            explorer.model(name, progress=report)
        except CCNetError as err:
            gr.Warning(f"{err} — still using {previous or explorer.default_model}")
            return (gr.update(value=previous or explorer.default_model), *_skips(on_model.n_outputs - 1))
        if path is None:
            return (name, name, *_skips(2), explorer.status(None, name), *_skips(on_upload.n_outputs - 3))
        return (name, name, *segment_views(path, name, alpha, view))

    # ---- layout ---------------------------------------------------------------------------------
    # every click sends new pictures through Gradio's cache: clear files older than an hour, hourly
    with gr.Blocks(title="CCNet Explorer", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO)
        status = gr.Markdown(explorer.status(), elem_id="status")
        click_state = gr.State(None)
        model_state = gr.State(explorer.default_model)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                image = gr.Image(label="image (PNG, JPEG, WebP, GIF)", type="filepath", sources=["upload", "clipboard"],
                                 elem_id="input", height=300)
                model = gr.Dropdown(models, value=explorer.default_model, label="model", elem_id="model",
                                    info="`default` is embedded; released presets are downloaded once, then cached")
                examples = gr.Examples(DEMOS, inputs=[image], label="examples (synthetic street scenes)",
                                       examples_per_page=8, cache_examples=False,
                                       api_visibility="private")
            with gr.Column(scale=3, min_width=300):
                overlay = gr.Image(label="segmentation: click a pixel", type="numpy", format="png",
                                   interactive=False, elem_id="overlay", buttons=["fullscreen"])
                opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="overlay opacity", elem_id="opacity")
                legend = gr.HTML(elem_id="legend")
                pixel = gr.Markdown("Click a pixel of the segmentation to see its attention.", elem_id="pixel-info")

        gr.Markdown("## Attention of the clicked pixel")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                heatmap = gr.Image(label="heat map (pixel ◯, top-k cells numbered)", type="numpy", format="png",
                                   interactive=False, elem_id="heatmap", buttons=["fullscreen", "download"])
            with gr.Column(scale=2, min_width=260):
                view = gr.Radio(["step 1", "step 2", "composed"], value="composed", label="map",
                                elem_id="view", info="each step's weights (the pixel's row and column) or both composed")
                cmap = gr.Dropdown(list(COLORMAPS), value="magma", label="colormap", elem_id="cmap")
                clip = gr.Slider(0.01, 1.0, value=0.5, step=0.01, label="clip above (× the map's maximum)",
                                 elem_id="clip", info="the paper's figures saturate the largest weights")
                with gr.Row():
                    scale = gr.Radio(list(SCALES), value="linear", label="scale", elem_id="scale")
                    upsampling = gr.Radio(list(UPSAMPLING), value="nearest", label="upsampling", elem_id="upsampling")
                with gr.Row():
                    grid_lines = gr.Checkbox(False, label="show the feature grid", elem_id="grid")
                    k = gr.Slider(1, 20, value=5, step=1, label="top-k", elem_id="topk-k")
        steps = gr.Image(label="every step and the composed map", type="numpy", format="png", interactive=False,
                         elem_id="steps", buttons=["fullscreen", "download"])
        chart = gr.Plot(label="weights along the row and column", elem_id="cross-chart")
        with gr.Row(equal_height=False):
            topk = gr.Dataframe(headers=TOPK_HEADERS, label="top-k attended cells", elem_id="topk",
                                interactive=False, wrap=True, min_width=340)
            summary = gr.Code(label="clicked cell as JSON (full maps: API /attention or the npz)", language="json",
                              elem_id="attention-json", interactive=False, max_lines=16, min_width=340)

        gr.Markdown("## Cost at this image's feature size: criss-cross vs non-local")
        cost_text = gr.Markdown(elem_id="cost-note")
        cost_table = gr.Dataframe(headers=COST_HEADERS, label="RCCA R=1, R=2 and the non-local block",
                                  elem_id="cost-table", interactive=False, wrap=True)
        cost_chart = gr.Plot(label="growth with the input size", elem_id="cost-chart")

        gr.Markdown("## Downloads")
        with gr.Row():
            mask_file = gr.DownloadButton("mask PNG", elem_id="dl-mask", size="sm")
            overlay_file = gr.DownloadButton("overlay PNG", elem_id="dl-overlay", size="sm")
            npz_file = gr.DownloadButton("attention maps (npz)", elem_id="dl-npz", size="sm")
            csv_file = gr.DownloadButton("cost table (CSV)", elem_id="dl-csv", size="sm")
        gr.Markdown(f"Images are downscaled to {MAX_SIDE} px on their longest side; at least {MIN_SIDE} px per side, "
                    f"at most {MAX_ASPECT}:1, files up to {MAX_FILE_SIZE}.")

        # ---- events -----------------------------------------------------------------------------
        display_inputs = [view, cmap, clip, scale, upsampling, grid_lines, k, opacity]
        seg_outputs = [overlay, legend, status, pixel, view, mask_file, overlay_file, click_state,
                       heatmap, steps, chart, topk, summary, npz_file, image]
        click_outputs = [overlay, pixel, heatmap, steps, chart, topk, summary, npz_file, click_state, overlay_file]
        cost_outputs = [cost_table, cost_chart, cost_text, csv_file]
        private = dict(api_visibility="private", preprocess=False)  # preprocess: see upload_path
        on_upload.n_outputs = len(seg_outputs)
        on_click.n_outputs = on_display.n_outputs = len(click_outputs)
        on_opacity.n_outputs = 2
        on_cost.n_outputs = len(cost_outputs)
        on_model.n_outputs = 2 + len(seg_outputs)

        for trigger in (image.upload, examples.load_input_event.then, image.clear):
            trigger(on_upload, [image, model, opacity, view], seg_outputs, concurrency_id=VIEWS, **private).then(
                on_cost, [image, model], cost_outputs, concurrency_id="cost", **private)
        overlay.select(on_click, [image, model, *display_inputs], click_outputs, concurrency_id=VIEWS, **private)
        gr.on([view.input, cmap.input, clip.release, scale.input, upsampling.input, grid_lines.input, k.release],
              on_display, [image, model, click_state, *display_inputs], click_outputs, concurrency_id=VIEWS,
              trigger_mode="always_last", **private)
        opacity.change(on_opacity, [image, model, click_state, opacity], [overlay, overlay_file],
                       concurrency_id=VIEWS, trigger_mode="always_last", **private)
        model.select(on_model, [model, model_state, image, opacity, view], [model, model_state, *seg_outputs],
                    concurrency_id=VIEWS, **private).then(on_cost, [image, model], cost_outputs,
                                                           concurrency_id="cost", **private)

        _api_endpoints(explorer)
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


def _api_endpoints(explorer: Explorer) -> None:
    """/segment, /attention and /cost for gradio_client, on hidden components. Coordinates are
    pixels of the analysed image (the upload, downscaled only above the size limit)."""
    with gr.Group(visible=False):
        image_in = gr.Image(label="image", type="filepath")
        x_in, y_in = gr.Number(label="x", precision=0), gr.Number(label="y", precision=0)
        model_in = gr.Textbox("", label="model", info="empty: the app's current model")
        overlay, heatmap, steps = gr.Image(format="png"), gr.Image(format="png"), gr.Image(format="png")
        info, attention_json, cost_json = gr.JSON(), gr.JSON(), gr.JSON()

    @api_guard
    def segment(image, model):  # noqa: ANN001, ANN202
        image = upload_path(image)
        analysis = explorer.segment(image, model or None)
        loaded = explorer.model(analysis.model)[0]
        return explorer.overlay(analysis), {
            "model": analysis.model, "image_size": list(analysis.size), "grid": list(analysis.grid),
            "seconds": analysis.seconds, "device": analysis.device, "note": analysis.note,
            "legend": legend(analysis.mask, loaded.classes, loaded.palette),
        }

    @api_guard
    def attention(image, x, y, model):  # noqa: ANN001, ANN202
        image = upload_path(image)
        if x is None or y is None:
            raise CCNetError("give the pixel as x (column) and y (row)")
        shown = Display()
        explanation = explorer.explain(image, x, y, model=model or None, display=shown)
        pictures = explorer.render(explanation, shown)
        return pictures["heatmap"], pictures["steps"], explanation.to_json(explorer.classes(explanation.analysis.model))

    @api_guard
    def cost(image, model):  # noqa: ANN001, ANN202
        image = upload_path(image)
        return explorer.cost(image, model or None)

    gr.on([], segment, [image_in, model_in], [overlay, info], api_name="segment", concurrency_id=VIEWS,
          preprocess=False)
    gr.on([], attention, [image_in, x_in, y_in, model_in], [heatmap, steps, attention_json], api_name="attention",
          concurrency_id=VIEWS, preprocess=False)
    gr.on([], cost, [image_in, model_in], [cost_json], api_name="cost", concurrency_id="cost", preprocess=False)


def main(argv: list[str] | None = None) -> None:
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


if __name__ == "__main__":
    main()
else:
    demo = build_app()
