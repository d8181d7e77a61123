"""CCNet Explorer, the web app: the Hugging Face Space's entry point and `python app.py`.

`python app.py [--model NAME] [--device auto|cpu|cuda] [--amp fp16|bf16]`; GRADIO_SERVER_NAME /
GRADIO_SERVER_PORT choose the address, CCNET_MODEL the start-up model (default: the embedded
`default`). The page itself is ccnet/app/ui.py.
"""
from ccnet.app.ui import MAX_FILE_SIZE, build_app, main

__all__ = ["MAX_FILE_SIZE", "build_app", "main"]

if __name__ == "__main__":
    main()
else:
    demo = build_app()
