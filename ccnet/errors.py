"""One exception type for every problem a user can cause; its message is shown as one line."""


class CCNetError(Exception):
    """A user-facing error: bad image, bad checkpoint, unknown model, failed download..."""


class ImageError(CCNetError):
    """The input is not an image we can segment."""


class CheckpointError(CCNetError):
    """A file is not a usable checkpoint, or does not fit the architecture."""
