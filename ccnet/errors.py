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


VISITOR_MESSAGE_LIMIT = 1000  # characters of a message a web visitor is shown (the model list fits)


def for_visitor(err: CCNetError) -> str:
    """What a visitor of the web app is shown: no server path, no URL, and never more than
    VISITOR_MESSAGE_LIMIT characters (a message that echoes a huge input is cut)."""
    message = getattr(err, "visitor", None) or str(err)
    return message if len(message) <= VISITOR_MESSAGE_LIMIT else message[:VISITOR_MESSAGE_LIMIT - 1] + "…"


def shown(value: object, limit: int = 40) -> str:
    """A value a client sent, as a message may echo it: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 1]}… ({len(text)} characters)"


class CheckpointError(CCNetError):
    """A file is not a usable checkpoint, or does not fit the architecture."""
