"""The launch settings that bound what visitors can make the server hold, read from ccnet.limits:
the size of a file, the sessions whose state is kept (Gradio keeps 10,000 by default, memory that
grew with every sessionless call), request bodies (BodyLimit) and, with a sweeper, the upload space
(UploadLimit)."""
from __future__ import annotations

from starlette.middleware import Middleware

from ccnet import limits
from ccnet.app.server.blobs import BlobRoute
from ccnet.app.server.body_limit import BodyLimit
from ccnet.app.server.clients import VouchForMcpCallers
from ccnet.app.server.connections import use_guarded_connections
from ccnet.app.server.disk import Sweeper
from ccnet.app.server.routes import RouteGuard
from ccnet.app.server.upload_limit import UploadLimit
from ccnet.project import DEMOS


def launch_options(sweeper: Sweeper | None = None) -> dict:
    """Keyword arguments for Gradio's `launch()`: the body limit and pace outermost, then the routes
    offered only in part (upload progress, URLs), the MCP callers' identity, the page's payloads
    (blobs) and, with a sweeper, the upload door. The demos are served wherever the app is started
    from (Gradio allows the working folder only). Connections per client are counted from here on
    in this process (see ccnet.app.server.connections)."""
    use_guarded_connections()  # uvicorn's protocol, set for this process: Gradio makes the server's config itself
    middleware = [Middleware(BodyLimit), Middleware(RouteGuard), Middleware(VouchForMcpCallers), Middleware(BlobRoute)]
    if sweeper is not None:
        middleware.append(Middleware(UploadLimit, usage=sweeper.usage, budget=sweeper.budget, failed=sweeper.soon,
                                     registry=sweeper.registry))
    return {"max_file_size": limits.FILE_BYTES, "state_session_capacity": limits.SESSIONS, "ssr_mode": False,
            "allowed_paths": [str(DEMOS)], "app_kwargs": {"middleware": middleware}}
