"""The Gradio page, the only Gradio importer of the package: common.py (guards, constants),
handlers.py (what each event does), page.py (layout and wiring), api.py (the named endpoints),
viewer.js and viewer.css (the attention viewer that runs in the browser); the video mode's page
at /video: video_page.py (layout, wiring, handlers), video_api.py (/segment_video and
/attention_video), video.js, video_events.js and video.css (the video viewer)."""
from ccnet.app.server.launch import launch_options
from ccnet.app.ui.page import ExplorerUI, build_app, main

__all__ = ["ExplorerUI", "build_app", "launch_options", "main"]
