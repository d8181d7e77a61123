"""CCNet Explorer, the web app: the Hugging Face Space's entry point and `python app.py`.

`python app.py [--model NAME] [--device auto|cpu|cuda] [--amp fp16|bf16]`; GRADIO_SERVER_NAME /
GRADIO_SERVER_PORT choose the address, CCNET_MODEL the start-up model (default: the embedded
`default`). The page itself is ccnet/app/ui.py. CCNET_DISK_BUDGET_MB bounds the app's files on disk
(ccnet/app/disk.py), CCNET_ALLOCATOR=system keeps glibc's allocator defaults
(ccnet/inference/allocator.py).
"""
from ccnet.app.disk import app_folder
from ccnet.inference.allocator import use_allocator_from_environment

if __name__ == "__main__":
    use_allocator_from_environment()  # before Gradio's threads allocate; a process-wide choice, so not on import
app_folder()  # before Gradio is imported: some of its modules read GRADIO_TEMP_DIR only then
from ccnet.app.ui import MAX_FILE_SIZE, build_app, launch_options, main  # noqa: E402

__all__ = ["MAX_FILE_SIZE", "build_app", "launch_options", "main"]

if __name__ == "__main__":
    main()
else:
    demo = build_app()
