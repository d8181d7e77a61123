"""The web app: state and presentation without Gradio (explorer, cache, present, exports,
uploads) and the one Gradio module (ui).

Importing this package turns Gradio's analytics and Hugging Face telemetry off before Gradio is
imported anywhere in it: the app makes no request to the outside at start-up.
"""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
