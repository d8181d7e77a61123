"""CCNet Explorer, the web app: the Hugging Face Space's entry point and `python app.py`.

`python app.py [--model NAME] [--device auto|cpu|cuda] [--amp fp16|bf16]`; GRADIO_SERVER_NAME /
GRADIO_SERVER_PORT choose the address, CCNET_MODEL the start-up model (default: the embedded
`default`). The page is ccnet/app/ui/, the server's guard rails ccnet/app/server/, the limits
ccnet/limits.py. CCNET_DISK_BUDGET_MB bounds the app's files on disk; CCNET_ALLOCATOR=kept keeps
freed memory for the next network run (docs/performance.md).
"""
from ccnet.app.ui import build_app, launch_options, main

__all__ = ["build_app", "launch_options", "main"]

if __name__ == "__main__":
    main()
