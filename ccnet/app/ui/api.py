"""The named API endpoints for gradio_client: /segment, /attention and /cost, on hidden components.
Their inputs and outputs are the project's documented contract (docs/api.md)."""
from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from ccnet import limits
from ccnet.app.analysis import Display, Explanation
from ccnet.app.explorer import PHOTO_MODEL, Explorer
from ccnet.app.exports import Exports
from ccnet.app.ui.common import VIEWS, api_guard, upload_path
from ccnet.errors import CCNetError, shown
from ccnet.nn.cost import METHODS
from ccnet.viz.pictures import legend


def api_endpoints(explorer: Explorer, exports: Exports) -> None:
    """/segment, /attention, /attention_maps and /cost for gradio_client (and MCP), on hidden
    components. Coordinates are pixels of the analysed image (the upload, downscaled only above
    the size limit). Pictures are returned as PNG files written at compression level 1 (Gradio
    would encode arrays at its default level, about four times slower for these pictures)."""
    with gr.Group(visible=False):
        image_in = gr.Image(label="image", type="filepath")
        x_in, y_in = gr.Number(label="x", precision=0), gr.Number(label="y", precision=0)
        model_in = gr.Textbox("", label="model", info="empty: the app's current model")
        size_in = gr.Textbox("", label="size", info="interactive or full; empty: the app's default")
        compare_in = gr.Textbox("", label="compare", info="nonlocal: also the non-local sibling's map")
        overlay, heatmap, steps = gr.Image(format="png"), gr.Image(format="png"), gr.Image(format="png")
        info, attention_json, maps_json, cost_json = gr.JSON(), gr.JSON(), gr.JSON(), gr.JSON()

    segment, attention, maps, cost = (make(explorer, exports) for make in (
        segment_endpoint, attention_endpoint, attention_maps_endpoint, cost_endpoint))
    gr.on([], segment, [image_in, model_in, size_in], [overlay, info], api_name="segment", concurrency_id=VIEWS,
          preprocess=False)
    gr.on([], attention, [image_in, x_in, y_in, model_in, size_in, compare_in], [heatmap, steps, attention_json],
          api_name="attention", concurrency_id=VIEWS, preprocess=False)
    gr.on([], maps, [image_in, x_in, y_in, model_in, size_in, compare_in], [maps_json], api_name="attention_maps",
          concurrency_id=VIEWS, preprocess=False)
    gr.on([], cost, [image_in, model_in], [cost_json], api_name="cost", concurrency_id="cost", preprocess=False)


IMAGE = (f"the image (PNG, JPEG, WebP, GIF, BMP or TIFF, at most {limits.FILE_BYTES / limits.MiB:g} MiB, at least "
         f"{limits.MIN_SIDE} px a side, at most {limits.MAX_ASPECT}:1; larger than {limits.MAX_SIDE} px it is "
         "downscaled), as an uploaded file or, to the MCP tools, as base64 data; the server fetches no URL")
MODEL = ('"" or "default" for the embedded model (synthetic street scenes only), or the name of a released '
         "mmsegmentation CCNet preset, e.g. ccnet_r50-d8_512x512_160k_ade20k for everyday photos or "
         "ccnet_r50-d8_512x1024_80k_cityscapes for street photos")
SIZE = ('for released models, "interactive" (the whole image at <= 0.26 megapixels: seconds on a CPU) or "full" '
        '(the preset\'s own test protocol); "" for the app\'s default')


def tool_doc(summary: str, args: dict[str, str], returns: str) -> str:
    """An endpoint's docstring as Gradio reads it for the API page and the MCP tools: each argument's
    description on one line (Gradio keeps only an argument's first line)."""
    return "\n".join([summary, "", "Args:", *(f"    {name}: {text}" for name, text in args.items()),
                      "Returns:", f"    {returns}"])


def segment_endpoint(explorer: Explorer, exports: Exports) -> Callable[..., tuple]:
    """The /segment endpoint's function (its name and docstring are also its MCP tool's)."""

    @api_guard
    def segment(image: dict | str | None, model: str = "", size: str = "") -> tuple:
        analysis = explorer.analyse(upload_path(image), model or None, size or None)
        loaded = explorer.models.model(analysis.model)[0]
        return exports.picture(analysis, "overlay", explorer.overlay(analysis)), {
            "model": analysis.model, "image_size": list(analysis.size), "grid": list(analysis.grid),
            "analysis_size": analysis.analysis_size, "seconds": analysis.seconds, "device": analysis.device,
            "note": analysis.note, "out_of_domain": analysis.out_of_domain,
            "domain_note": analysis.domain.note if analysis.domain else None,
            "suggested_model": PHOTO_MODEL if analysis.out_of_domain else None,
            "legend": legend(analysis.mask, loaded.classes, loaded.palette),
        }

    segment.__doc__ = tool_doc(
        "Segment an image with CCNet (criss-cross attention) and return the class colours over it.",
        {"image": IMAGE, "model": MODEL, "size": SIZE},
        "The overlay (PNG) and a JSON: model, image_size [H, W], feature grid [h, w], analysis_size, seconds, "
        "device, note, out_of_domain (true when the embedded model is shown something unlike its synthetic street "
        "scenes), domain_note, suggested_model, and the legend (class name, colour, share of the pixels).")
    return segment


def attention_endpoint(explorer: Explorer, exports: Exports) -> Callable[..., tuple]:
    """The /attention endpoint's function (its name and docstring are also its MCP tool's)."""

    @api_guard
    def attention(image: dict | str | None, x: float | None, y: float | None, model: str = "",
                  size: str = "", compare: str = "") -> tuple:
        explanation, data = pixel_maps(explorer, image, x, y, model, size, compare)
        pictures = explorer.render(explanation, Display())
        heatmap, steps = (exports.picture(explanation.analysis, name, pictures[name]) for name in ("heatmap", "steps"))
        return heatmap, steps, data

    attention.__doc__ = tool_doc(
        "Where one pixel looks: its feature cell's criss-cross attention at each recurrence step (its row and "
        "column) and composed over all steps (the whole image).",
        {"image": IMAGE + "; it is analysed once, then every pixel is answered from the server's cache",
         "x": "the pixel's column in the analysed image (0 is the left edge), a whole number",
         "y": "the pixel's row in the analysed image (0 is the top edge), a whole number",
         "model": MODEL, "size": SIZE,
         "compare": '"nonlocal" to add the non-local sibling\'s map of the same cell (same backbone) and how the two '
                    'agree; "" for none. Only the embedded model\'s family has siblings.'},
        "The composed map over the image (PNG, pixel and top-5 cells marked), every map side by side (PNG), and a "
        "JSON: grid, cell [row, col], steps and composed (h x w weights, each summing to 1), topk (rank, cell, "
        "pixel, weight, class), pixel, class, confidence; with compare: nonlocal (h x w, sums to 1) and agreement "
        "(topk_overlap, js_divergence_bits, on_cross_share of each map, top_cell of each).")
    return attention


def pixel_maps(explorer: Explorer, image: dict | str | None, x: float | None, y: float | None, model: str,
               size: str, compare: str) -> tuple[Explanation, dict]:
    """What /attention and /attention_maps share: the pixel's explanation and its JSON."""
    image = upload_path(image)
    if x is None or y is None:
        raise CCNetError("give the pixel as x (column) and y (row)")
    if compare not in ("", "nonlocal"):
        raise CCNetError(f"compare must be empty or 'nonlocal', got {shown(compare)}")
    explanation = explorer.explain(image, x, y, model=model or None, display=Display(), size=size or None)
    data = explanation.to_json(explorer.classes(explanation.analysis.model))
    if compare:
        non_local, data["agreement"] = explorer.compare_nonlocal(explanation.analysis, explanation.x, explanation.y)
        data["nonlocal"] = non_local.tolist()
    return explanation, data


def attention_maps_endpoint(explorer: Explorer, exports: Exports) -> Callable[..., dict]:
    """The /attention_maps endpoint's function: /attention's JSON without its pictures, for programs."""

    @api_guard
    def attention_maps(image: dict | str | None, x: float | None, y: float | None, model: str = "",
                       size: str = "", compare: str = "") -> dict:
        return pixel_maps(explorer, image, x, y, model, size, compare)[1]

    attention_maps.__doc__ = tool_doc(
        "Where one pixel looks, as numbers only: /attention's JSON without its two pictures (for programs "
        "that want the maps, not images of them).",
        {"image": IMAGE, "x": "the pixel's column in the analysed image (0 is the left edge), a whole number",
         "y": "the pixel's row in the analysed image (0 is the top edge), a whole number", "model": MODEL,
         "size": SIZE, "compare": '"nonlocal" to add the non-local sibling\'s map and how the two agree; "" for none'},
        "A JSON: grid, cell [row, col], steps and composed (h x w weights, each summing to 1), topk (rank, cell, "
        "pixel, weight, class), pixel, class, confidence; with compare: nonlocal and agreement (as /attention).")
    return attention_maps


def cost_endpoint(explorer: Explorer, exports: Exports) -> Callable[..., dict]:
    """The /cost endpoint's function (its name and docstring are also its MCP tool's)."""

    @api_guard
    def cost(image: dict | str | None, model: str) -> dict:
        return explorer.cost(upload_path(image), model or None)

    cost.__doc__ = tool_doc(
        "What criss-cross attention (R = 1, 2 and 3) and a non-local block cost at this image's feature size: the "
        "attention maps' bytes, the measured peak memory, FLOPs and time.",
        {"image": IMAGE, "model": MODEL + "; its channel count sets the blocks' width"},
        f"A JSON: feature_size [h, w], channels, device, and for {', '.join(METHODS)}: memory_bytes, analytic_bytes, "
        "flops, time_ms, estimated (with a reason when estimated).")
    return cost

