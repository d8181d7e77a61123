"""One exception type for every problem a user can cause; its message is shown as one line."""


class CCNetError(Exception):
    """A user-facing error: bad image, bad checkpoint, unknown model, failed download..."""


class ImageError(CCNetError):
    """The input is not an image we can segment."""


class DownloadError(CCNetError):
    """A released checkpoint could not be fetched. The message names the URL and the cache path (for
    the command line and the server's log); `visitor` says the same without them, for a web page."""

    def __init__(self, message: str, visitor: str) -> None:
        super().__init__(message)
        self.visitor = visitor


def for_visitor(err: CCNetError) -> str:
    """What a visitor of the web app is shown: no server path, no URL."""
    return getattr(err, "visitor", None) or str(err)


class CheckpointError(CCNetError):
    """A file is not a usable checkpoint, or does not fit the architecture."""
