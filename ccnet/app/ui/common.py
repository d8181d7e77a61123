"""What the page's modules share: which files a request may read, the handlers' guards, and the
constants of the page."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from ccnet.app.present import md_text
from ccnet.app.server.clients import client_of, proxy_hops
from ccnet.app.server.uploads import checked_upload
from ccnet.errors import CCNetError, for_visitor
from ccnet.project import DEMOS

log = logging.getLogger("ccnet.app")
EXAMPLES = sorted(str(p) for p in DEMOS.glob("*.png") if not p.stem.endswith("_label"))
FIRST_EXAMPLE = str(DEMOS / "street_seed1_car.png")  # the first screen: this scene ...
FIRST_PIXEL = (165, 182)  # ... with a pixel of its car pinned (tests/e2e checks it is a car)
VIEWS = "views"  # concurrency id of every event that writes the segmentation or attention views
MODELS = "models"  # concurrency id of model loading (downloads): its own queue, so views are not held up
Updates = dict[Any, Any]  # component -> new value
OUT_OF_MEMORY = "the server ran out of memory on this request; try a smaller image"


def visitor(request: gr.Request | None) -> str:
    """The client a page's event comes from, as the fair queue counts it (behind a proxy, the address
    the proxy appended): an upload's link key is issued to it."""
    return client_of(request, proxy_hops())


def upload_path(payload: dict | str | None) -> str | None:
    """The uploaded file's path on the server. Events take the image unprocessed (preprocess=False)
    so that a broken or odd file reaches ccnet.inference.images and gets its one-line message:
    Gradio's own image decoding would fail first, with a bare "Error". So the path is checked
    here: only Gradio's upload folder and the bundled examples may be read."""
    return checked_upload(payload, upload_roots())


def upload_roots() -> tuple[Path, ...]:
    """The folders a request's files may lie in: Gradio's uploads (and cache) and the examples."""
    return Path(gr.utils.get_upload_folder()), DEMOS


def ui_guard(fn: Callable[..., Updates]) -> Callable[..., Updates]:
    """UI handlers (methods of the page): a CCNetError becomes the status line's message, anything
    else is logged and shown as a short generic line; the other views keep their values."""

    @functools.wraps(fn)
    def wrapper(page: Any, *args: Any, **kwargs: Any) -> Updates:
        try:
            return fn(page, *args, **kwargs)
        except CCNetError as err:
            if for_visitor(err) != str(err):
                log.warning("%s: %s", fn.__name__, err)  # the details (URL, paths) for the server's log
            return {page.status: f"⚠️ {md_text(for_visitor(err))}"}
        except MemoryError:
            log.exception("handler %s ran out of memory", fn.__name__)
            return {page.status: f"⚠️ {OUT_OF_MEMORY}"}
        except Exception:
            log.exception("handler %s failed", fn.__name__)
            return {page.status: "⚠️ Something went wrong on the server (details in its log); try another image."}

    return wrapper


def api_guard(fn: Callable) -> Callable:
    """API endpoints: the client gets the message of a CCNetError (or a generic one) as its error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CCNetError as err:
            if for_visitor(err) != str(err):
                log.warning("%s: %s", fn.__name__, err)
            raise gr.Error(for_visitor(err), print_exception=False) from None
        except MemoryError:
            log.exception("endpoint %s ran out of memory", fn.__name__)
        except Exception:
            log.exception("endpoint %s failed", fn.__name__)
            raise gr.Error("internal error (details in the server log)", print_exception=False) from None
        # only a MemoryError gets here: raised outside its block, the error keeps none of the request's arrays
        raise gr.Error(OUT_OF_MEMORY, print_exception=False)

    return wrapper
