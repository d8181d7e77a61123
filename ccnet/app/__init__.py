"""The web app: state and presentation without Gradio (explorer, analysis, cache, present, exports,
links, video), the Gradio page that wires them (ui), and the server's guard rails (server).

Importing this package turns Gradio's analytics and Hugging Face telemetry off before Gradio is
imported anywhere in it: the app makes no request to the outside at start-up.
"""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
