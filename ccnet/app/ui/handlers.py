"""The page's event handlers. Each is a method of the page (page.py holds the components) that calls
the Explorer and returns {component: new value}; components missing from the dict keep theirs."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np

from ccnet.app import inputs
from ccnet.app.analysis import Analysis, Display, Explanation
from ccnet.app.browser_maps import in_browser, page_data, pinned_maps, viewer_value
from ccnet.app.explorer import PHOTO_MODEL, Explorer
from ccnet.app.exports import Exports
from ccnet.app.links import EXPIRED, VIEWS, parse_link
from ccnet.app.present import (
    SCORES_NOTE,
    bare_pixel_text,
    compact_json,
    compare_text,
    cost_note,
    cost_rows,
    cost_strip,
    family_scores,
    legend_html,
    md_text,
    pixel_text,
    topk_rows,
)
from ccnet.app.server.blobs import BLOBS
from ccnet.app.ui.common import (
    EXAMPLES,
    FIRST_EXAMPLE,
    FIRST_PIXEL,
    Updates,
    log,
    ui_guard,
    upload_path,
    visitor,
)
from ccnet.errors import CCNetError, for_visitor, shown
from ccnet.inference.geometry import cell_of
from ccnet.viz import charts
from ccnet.viz.pictures import heatmap, mark_pixel
from ccnet.weights import family, presets

HINT = "Hover over any panel to see where that feature cell looks; click, tap or press Enter to pin a pixel."


def _enabled(path: Path | None) -> dict:
    return gr.update(value=path, interactive=path is not None)


def photo_choice(photo: presets.Preset) -> str:
    """The photo model's button: dataset, backbone, classes and download, no training details."""
    return (f"{presets.DATASET_NAMES[photo.dataset]} · {photo.backbone} · {photo.num_classes} classes · "
            f"≈{photo.download_mb:.0f} MB download")


class Handlers:
    """Mixed into the page: `self` holds the Explorer, the Exports and every component."""

    explorer: Explorer
    exports: Exports
    example_keys: dict[str, str]  # image key -> demo file, so that links name a demo, not its key
    viewer_budget: int  # bytes of quantised maps the page may receive per image

    def example_name(self, analysis: Analysis) -> str | None:
        """The demo file an analysis came from, if any: links then name it, not its key."""
        path = self.example_keys.get(analysis.key)
        return Path(path).name if path else None

    def viewer_for(self, analysis: Analysis, link: str | None, view: str | None, pin: tuple[int, int] | None = None,
                   display: dict | None = None, explanation: Explanation | None = None) -> dict:
        """The viewer's value: a few hundred bytes (Gradio keeps it in the session) naming the page
        data the page fetches (the image's maps within the budget), the upload's link key, the view,
        the pinned pixel, the display a link asked for and, over the budget, the URL of the pinned
        cell's maps."""
        identity = (analysis.model, analysis.analysis_size, analysis.key, self.viewer_budget)
        data = BLOBS.url(identity, lambda: json.dumps(self.page_data(analysis)).encode())
        value = viewer_value(analysis, data, self.viewer_budget)
        value.update(key=link, view=view, display=display or {}, pin=list(pin) if pin else None,
                     example=self.example_name(analysis))
        if explanation is not None and not value["maps"]:  # over the budget: the server's maps of this cell
            cell = explanation.maps.cell
            value["pinned"] = BLOBS.url((*identity, cell), lambda: json.dumps(pinned_maps(explanation.maps)).encode())
        return value

    def page_data(self, analysis: Analysis) -> dict:
        """What the page draws this image from (browser_maps.page_data): every head shown side by
        side, the cost strip and the cue panel's cells."""
        loaded = self.explorer.models.model(analysis.model)[0]
        panel = np.argwhere(self.explorer.panel_cells(analysis)).tolist()
        extra = {"cost": cost_strip(analysis.grid, loaded.net.config.head_channels), "panel_cells": panel}
        return page_data(self.explorer.heads(analysis), analysis.model, loaded.classes, loaded.palette,
                         self.viewer_budget, extra)

    def unchanged(self) -> Updates:
        """Nothing changes (Gradio reads an empty dict as one value, not as no update)."""
        return {self.status: gr.skip()}

    # ---- an image arrives (upload, example, link, model switch) --------------------------------
    def image_views(self, analysis: Analysis, link: str | None, pin: tuple[int, int] | None = None,
                    view: str | None = None, display: dict | None = None) -> Updates:
        """Everything an analysed image shows: the viewer with its maps, the legend, the status and
        the image's downloads; a pinned pixel's views are emptied (or filled, with `pin`). `link` is
        the upload's link key (None for an example)."""
        loaded = self.explorer.models.model(analysis.model)[0]
        updates = {
            **self.domain_views(analysis),
            self.viewer: self.viewer_for(analysis, link, view, pin, display),
            self.legend: legend_html(analysis, loaded.classes, loaded.palette),
            self.status: self.explorer.status(analysis), self.pixel: HINT, self.key_state: link,
            self.mask_file: _enabled(self.exports.mask_png(analysis, loaded.palette)),
            self.colour_file: _enabled(self.exports.colour_png(analysis, loaded.palette)),
            self.overlay_file: _enabled(self.exports.picture(analysis, "overlay", self.explorer.overlay(analysis))),
            self.click_state: None, **dict.fromkeys((self.topk, self.chart, self.summary)),
            self.npz_file: _enabled(None), **self.compare_hidden(),
        }
        if pin:
            updates.update(self.pin_views(analysis, link, pin, view or Display.view, Display.k))
        return updates

    def domain_views(self, analysis: Analysis | None) -> Updates:
        """The out-of-domain note and the button to a released model for photos, when the embedded
        model meets something that is not a synthetic street scene; hidden otherwise."""
        offer = analysis is not None and analysis.out_of_domain and PHOTO_MODEL in self.models
        if not offer:
            return {self.domain_note: gr.update(value="", visible=False), self.photo_button: gr.update(visible=False)}
        photo = presets.get(PHOTO_MODEL)
        note = f"⚠️ **Not a street scene?** {analysis.domain.note[0].upper()}{analysis.domain.note[1:]}."
        return {self.domain_note: gr.update(value=note, visible=True),
                self.photo_button: gr.update(value=f"Try a model for photos: {photo_choice(photo)}", visible=True)}

    def cleared(self, model: str, message: str) -> Updates:
        """No image (or a refused one): every view empty, the message in the status line."""
        return {
            **self.domain_views(None),
            self.status: self.explorer.status(None, model) + f" · {message}", self.pixel: HINT,
            self.viewer: None, self.legend: "", self.image: None, self.key_state: None, self.click_state: None,
            **dict.fromkeys((self.topk, self.chart, self.summary)),
            **{c: _enabled(None) for c in (self.mask_file, self.colour_file, self.overlay_file, self.npz_file)},
            **self.compare_hidden(),
        }

    def compare_hidden(self) -> Updates:
        """The non-local comparison emptied and hidden (no pin, no image, or a model outside the family)."""
        return {self.compare_image: gr.update(value=None, visible=False),
                self.compare_text: gr.update(value="", visible=False)}

    @ui_guard
    def on_upload(self, path: dict | None, model: str, size: str, request: gr.Request | None = None) -> Updates:
        if upload_path(path) is None:
            return self.cleared(model, "Upload an image or pick an example.")
        try:
            return self.image_views(*self.current(path, None, model, size, visitor(request)))
        except CCNetError as err:  # also empty the input, so the cost step that follows stays quiet
            return self.cleared(model, f"⚠️ {md_text(for_visitor(err))}")

    @ui_guard
    def on_clear(self, model: str) -> Updates:
        return {**self.cleared(model, "Upload an image or pick an example."), self.cost_table: None,
                self.cost_chart: None, self.cost_text: "", self.csv_file: _enabled(None)}

    # ---- a pixel is pinned ----------------------------------------------------------------------
    def pin_views(self, analysis: Analysis, link: str | None, pixel: tuple[int, int], view: str,
                  k: float) -> Updates:
        """What needs the server for a pinned pixel: its class, the top-k of the chosen view, the
        row/column chart and the maps as a download."""
        pixel = inputs.pixel(*pixel)
        cell_of(*pixel, analysis.size, analysis.grid)  # inside the image, or one line
        if analysis.kind == "none":
            return self.bare_pin_views(analysis, pixel, view)
        explanation, classes, ranked = self.ranked_views(analysis, pixel, view, k)
        updates = {}
        if not in_browser(analysis, self.viewer_budget):  # over the budget: the server's maps of this cell
            updates[self.viewer] = self.viewer_for(analysis, link, view, pixel, explanation=explanation)
        return {
            **updates, **self.compare_views(analysis, *pixel), **ranked,
            self.pixel: pixel_text(explanation, classes),
            self.chart: charts.cross_weights(explanation.maps, analysis.views),
            self.npz_file: _enabled(self.exports.attention_npz(explanation)),
            self.click_state: [*pixel, view],
        }

    def ranked_views(self, analysis: Analysis, pixel: tuple[int, int], view: str,
                     k: float) -> tuple[Explanation, tuple[str, ...], Updates]:
        """The pinned cell's explanation, the model's classes, and what the top-k slider changes:
        the top-k table and the summary JSON."""
        shown = Display(view=view.replace("step", "step ") if view.startswith("step") else "composed",
                        k=inputs.top_k(k))
        explanation = self.explorer.explain(analysis, *pixel, display=shown)
        classes = self.explorer.classes(analysis.model)
        summary = {k: v for k, v in explanation.to_json(classes).items() if k not in ("steps", "composed")}
        return explanation, classes, {self.topk: topk_rows(explanation), self.summary: compact_json(summary)}

    def bare_pin_views(self, analysis: Analysis, pixel: tuple[int, int], view: str) -> Updates:
        """A pin on a head without attention: the pixel's class and the family's comparison only."""
        return {
            **self.compare_views(analysis, *pixel),
            self.pixel: bare_pixel_text(analysis, *pixel, self.explorer.classes(analysis.model)),
            **dict.fromkeys((self.topk, self.chart, self.summary)), self.npz_file: _enabled(None),
            self.click_state: [*pixel, view],
        }

    def compare_views(self, analysis: Analysis, x: int, y: int) -> Updates:
        """For the embedded family: the non-local head's map of the pinned cell, how it agrees with
        the criss-cross composed map, and every head's class at the pixel; hidden for other models."""
        if analysis.model != family.BASE and not family.is_sibling(analysis.model):
            return self.compare_hidden()
        non_local, figures = self.explorer.compare_nonlocal(analysis, x, y)
        shown = Display()
        picture = heatmap(non_local, analysis.thumbnail, shown.cmap, shown.clip, shown.scale, shown.upsampling)
        scale = analysis.thumbnail.shape[1] / analysis.size[1]
        picture = mark_pixel(picture, round(x * scale), round(y * scale))
        text = compare_text(figures, self.explorer.head_classes(analysis, x, y))
        return {self.compare_image: gr.update(value=picture, visible=True),
                self.compare_text: gr.update(value=text, visible=True)}

    def current(self, path: dict | None, key: str | None, model: str, size: str | None = None,
                client: str | None = None) -> tuple[Analysis, str | None]:
        """The image the page shows, analysed (cached), and its upload's link key (None for an
        example): the uploaded or example file, else the upload a link's key names. Only the events
        that keep the key in the page's state pass `client`, so only they may be issued a new one."""
        path = upload_path(path)
        if path is None and key:
            found = self.explorer.links.resolve(key)
            if found is None:
                raise CCNetError(EXPIRED)
            path = found[1]
        if path is None:
            raise CCNetError("no image yet: upload one or pick an example")
        analysis = self.explorer.analyse(path, model, size)
        if self.example_name(analysis):
            return analysis, None
        return analysis, self.explorer.links.issue(analysis.key, path, key, client)

    @ui_guard
    def on_pin(self, path: dict | None, key: str | None, model: str, size: str, k: float,
               evt: gr.EventData) -> Updates:
        data = evt._data if isinstance(evt._data, dict) else {}
        analysis, link = self.current(path, key, model, size)
        view = data.get("view") if data.get("view") in VIEWS else Display.view  # kept in the session: a name, no more
        return self.pin_views(analysis, link, (data.get("x"), data.get("y")), view, k)

    @ui_guard
    def on_topk(self, path: dict | None, key: str | None, model: str, size: str, click: list | None,
                k: float) -> Updates:
        """Only the top-k table and the summary change: the maps, the chart and the non-local
        comparison of the pinned cell do not depend on k."""
        if not click:
            return self.unchanged()
        analysis = self.current(path, key, model, size)[0]
        if analysis.kind == "none":
            return self.unchanged()
        return self.ranked_views(analysis, (click[0], click[1]), click[2], k)[2]

    # ---- the model menu -------------------------------------------------------------------------
    # Two events: loading (a download, minutes on a slow link) runs on its own queue, so visitors on
    # cached images are answered meanwhile; the views then run on the views' queue. `model_state`
    # holds the model the page shows; the menu's value, the one asked for.
    @ui_guard
    def on_model_load(self, name: str, previous: str | None,
                      progress: gr.Progress = gr.Progress()) -> Updates:  # noqa: B008 - Gradio's progress idiom
        """Load (download once) the model chosen in the menu; on failure the menu goes back."""
        if name == previous:  # choosing the model already in use changes nothing
            return self.unchanged()

        def report(done: int, total: int | None) -> None:
            progress(done / total if total else None, desc=f"downloading {name}: {done / 2**20:.0f} MiB")

        try:
            self.explorer.models.model(name, progress=report)
        except CCNetError as err:  # a name outside the menu is refused before anything is loaded or logged
            log.warning("model switch to %s failed: %s", shown(name), err)
            return {self.model: gr.update(value=previous or self.explorer.default_model),
                    self.status: f"⚠️ {md_text(for_visitor(err))} — still using "
                                   f"{md_text(previous or self.explorer.default_model)}"}
        log.info("model %s loaded (switching from %s)", name, previous)
        return {self.model: name}

    @ui_guard
    def on_photo_model_load(self, previous: str | None,
                            progress: gr.Progress = gr.Progress()) -> Updates:  # noqa: B008 - Gradio's idiom
        """The out-of-domain note's button: load the released model for photos, then show it."""
        return self.on_model_load(PHOTO_MODEL, previous, progress)

    @ui_guard
    def on_model_views(self, name: str, shown_model: str | None, path: dict | None, key: str | None,
                       size: str, click: list | None, request: gr.Request | None = None) -> Updates:
        """Show the image with the model the menu holds, once it is loaded, the pinned pixel still
        pinned (its views recomputed). A failed load has put the menu back: nothing changes, and its
        error stays in the status line (a fresh status here wiped it within milliseconds)."""
        if not self.explorer.models.loaded(name) or name == shown_model:
            return self.unchanged()
        shown = upload_path(path) is not None or bool(key)
        switched = {self.model: name, self.model_state: name, self.size: self.size_choice(name)}
        if not shown:
            return {**switched, self.status: self.explorer.status(None, name)}
        return {**switched, **self.image_views(*self.current(path, key, name, size, visitor(request)),
                                               *self.pinned(click))}

    @ui_guard
    def on_size(self, size: str, path: dict | None, key: str | None, model: str, click: list | None,
                request: gr.Request | None = None) -> Updates:
        """The analysis size changed: the image again at that size (cached per size), the pinned
        pixel still pinned."""
        if upload_path(path) is None and not key:
            return self.unchanged()
        return self.image_views(*self.current(path, key, model, size, visitor(request)), *self.pinned(click))

    @staticmethod
    def pinned(click: list | None) -> tuple[tuple[int, int] | None, str | None]:
        """The pin (pixel, view) the page has, from the click state the server keeps."""
        return ((click[0], click[1]), click[2]) if click else (None, None)

    def size_choice(self, model: str) -> dict:
        """The analysis size applies to released models only: for others the choice is disabled."""
        return gr.update(interactive=model in presets.presets())

    # ---- the cost of attention at this image's size ---------------------------------------------
    @ui_guard
    def on_cost(self, path: dict | None, key: str | None, model: str, size: str) -> Updates:
        try:
            analysis = self.current(path, key, model, size)[0]
        except CCNetError:
            return {self.cost_table: None, self.cost_chart: None, self.cost_text: "", self.csv_file: _enabled(None)}
        measured = self.explorer.cost(analysis, model)
        scores = family_scores() if family.arm_of(model) else None
        return {
            self.cost_table: cost_rows(measured, scores),
            self.cost_text: cost_note(measured) + (SCORES_NOTE if scores else ""),
            self.cost_chart: charts.cost_growth(self.explorer.cost_growth(measured)),
            self.csv_file: _enabled(self.exports.cost_csv(analysis, measured)),
        }

    # ---- opening the page: the first screen, or what a link asks for ----------------------------
    @ui_guard
    def on_load(self, request: gr.Request) -> Updates:
        params = dict(request.query_params) if request is not None else {}
        link = parse_link(params, [Path(p).name for p in EXAMPLES], self.models)
        model = link.model or self.explorer.default_model
        updates = {self.model: model, self.model_state: model, self.size: self.size_choice(model)}
        if link.key:
            try:
                analysis, key = self.current(None, link.key, model)
            except CCNetError as err:
                return {**updates, **self.cleared(model, f"⚠️ {md_text(for_visitor(err))}")}
            link = link.place(analysis.size)
            updates.update(self.image_views(analysis, key, link.pixel, link.view, link.display))
        else:
            example = str(Path(FIRST_EXAMPLE).with_name(link.example)) if link.example else FIRST_EXAMPLE
            try:
                analysis = self.explorer.analyse(example, model)
            except CCNetError as err:  # e.g. the link's released model is still downloading: retry soon
                return {**updates, **self.cleared(model, f"⚠️ {md_text(for_visitor(err))}")}
            link = link.place(analysis.size)
            pixel = link.pixel or (None if link.example or link.problems else FIRST_PIXEL)
            updates.update({self.image: example, **self.image_views(analysis, None, pixel, link.view, link.display)})
        if link.problems:
            updates[self.status] += " · ⚠️ link: " + md_text("; ".join(link.problems))
        return updates
