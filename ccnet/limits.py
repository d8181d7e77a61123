"""The published limits: what one image, one request, one visitor and the whole server may take.

Every module that enforces a limit reads it here (the decoder in ccnet.inference, the server's
guards in ccnet.app.server, the page's notes), the docs' limits table is generated from LIMITS
(docs/robustness.md, checked by a test), and a test fails if a limit is defined or restated
anywhere else. It sits at the bottom of the package because the decoder, which the command line
uses too, and the server both read it.
"""
from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20

# ---- one image ------------------------------------------------------------------------------
FILE_BYTES = 20 * MiB  # an upload's size (Gradio's max_file_size)
MAX_PIXELS = 40_000_000  # a header claiming more is a decompression bomb
MAX_SIDE = 2048  # longer images are downscaled to this side before the network runs
MIN_SIDE = 32  # below this the stride-8 feature grid has fewer than 4 cells a side
MAX_ASPECT = 16  # longer side over shorter side: beyond it the grid is a sliver (MAX_SIDE / 16 >= MIN_SIDE)
METADATA_SLACK_BYTES = 64 << 10  # what a file's metadata directories may claim beyond the file's own bytes
# Decoding memory (ccnet/inference/decode_budget.py estimates a file's from these; its tests measure
# them): the worst decoder measured (WebP's canvases, bytes a pixel while decoding) over Pillow's
# 4-byte RGB store, on the largest image, the file itself and as much metadata again, and the
# codecs' own buffers, rounded up to a multiple of 256 MiB.
WORST_DECODER_BYTES_PER_PIXEL = 13
STORE_BYTES_PER_PIXEL = 4
CODEC_BYTES = 8 * MiB
DECODE_BUDGET_BYTES = -(-(MAX_PIXELS * (WORST_DECODER_BYTES_PER_PIXEL + STORE_BYTES_PER_PIXEL) + 2 * FILE_BYTES
                          + CODEC_BYTES) // (256 * MiB)) * (256 * MiB)

# ---- one clip (animated GIF, PNG or WebP): each frame also within an image's limits ------------
MIN_FRAMES = 2  # fewer is an image
MAX_FRAMES = 16  # a clip's every frame goes through the network at once; its 3D head attends across them
MAX_CLIP_PIXELS = 16_000_000  # pixels of all frames together: their RGB is 48 MB, held twice while stacked
MAX_CLIP_SECONDS = 20  # playing time, the frames' stated durations together: past it, frames of a slideshow, not
# moments of one scene, which is what the 3D heads attend across (a frame stating no duration counts 0)

# ---- one request ----------------------------------------------------------------------------
BODY_BYTES = MiB  # a request body that is not an upload (the API's JSON is under 10 KiB)
BODY_GRACE_S = 10  # any body may take this long; after it, it must keep up BODY_MIN_RATE (and a head must be in)
BODY_MIN_RATE = 16 << 10  # bytes a second: a slower body is dropped (408) and what it reserved released
# ... and no body may pause longer than BODY_GRACE_S: a burst does not buy a long stall
BODIES_PER_CLIENT = 8  # request bodies (not uploads) one client may be sending at once: each may hold BODY_BYTES
UPLOAD_PARTS = 4  # files (multipart parts) in one upload request: the page sends one image at a time
CONNECTIONS_PER_CLIENT = 64  # open from one address, served with no proxy in front (a browser opens about 6)

# ---- one visitor and the whole server -------------------------------------------------------
WAITING_PER_CLIENT = 8  # a page fires at most a few events at once (an upload, its views, the cost)
QUEUE_SIZE = 64  # events waiting in the queue, every client together
# ... and with n clients waiting, each may have at most QUEUE_SIZE // (2 n) (and WAITING_PER_CLIENT): no
# handful of addresses fills the queue, and each client's next job waits behind the others' (fair order)
SESSIONS = 256  # visitor sessions whose state the server keeps (the oldest go first)
SESSION_STATE_BYTES = 16 << 10  # what one session's state may hold (the page's maps are fetched, not kept)
DISK_BUDGET_MB = 1024  # the app's files (uploads, results), default of CCNET_DISK_BUDGET_MB
UPLOAD_MAX_AGE_S = 3600  # an upload not used for this long is deleted (so are result files this old)
BRIDGE_UPLOAD_S = 120  # the same for an image Gradio's MCP bridge uploads for one tool call, on an account of its own
UPLOAD_SHARE = 4  # one client's uploads may take at most 1/UPLOAD_SHARE of the disk budget
OPEN_UPLOADS_PER_CLIENT = 2  # uploads one client may be sending at once
LINKS = 512  # upload links (keys) the server answers; each expires with its upload
LINKS_PER_CLIENT = 32  # links one client's pages hold; a client making more turns over its own
ANALYSES, ANALYSES_BYTES = 8, 768 << 20  # network results kept for clicks, all visitors together
CLIP_ANALYSES, CLIP_ANALYSES_BYTES = 8, 384 << 20  # the same for clips (the video mode)
VIEWER_DATA_BYTES = 96 << 20  # the maps pages fetch by key, of the last images viewed (2048 px: about 1.5 MB)
MODEL_MEMORY_MB = 1024  # released models kept in memory (their parameters); the least recently used go
MODEL_CACHE_MB = 2048  # released checkpoints kept on disk by the server; the least recently used go
STOP_S = 5  # SIGTERM or SIGINT to exit, files removed, whatever connections are open
FORCED_EXIT_S = 10  # a stop still hanging then: files removed and the process ended (status 1)


def duration(seconds: int) -> str:
    """A limit's time as messages say it: "an hour", "90 minutes", "45 s"."""
    if seconds == 3600:
        return "an hour"
    return f"{seconds // 60} minutes" if seconds % 60 == 0 and seconds >= 120 else f"{seconds} s"


@dataclass(frozen=True)
class Limit:
    """One row of the published table."""

    what: str
    value: str
    beyond: str  # what happens past it


def _mib(nbytes: int) -> str:
    return f"{nbytes / MiB:g} MiB"


LIMITS = (
    Limit("an uploaded file", _mib(FILE_BYTES), "refused by Gradio before it reaches the disk"),
    Limit("pixels an image header may claim", f"{MAX_PIXELS:,}", "refused from the header, nothing decoded"),
    Limit("an image's longest side", f"{MAX_SIDE} px", "downscaled to it (the status line says so)"),
    Limit("an image's shortest side", f"{MIN_SIDE} px", "refused in one line"),
    Limit("an image's aspect ratio", f"{MAX_ASPECT}:1", "refused in one line"),
    Limit("memory to decode one image (pixels, decoder, metadata)", _mib(DECODE_BUDGET_BYTES),
          "refused from the header before decoding"),
    Limit("bytes an image's metadata directories may claim", f"the file's own + {METADATA_SLACK_BYTES >> 10} KiB",
          "refused before the file is opened"),
    Limit("a GIF's comments and other extension data", f"{METADATA_SLACK_BYTES >> 10} KiB",
          "refused before the file is opened"),
    Limit("frames in a clip (animated GIF, PNG or WebP)", f"{MIN_FRAMES} to {MAX_FRAMES}", "refused in one line"),
    Limit("pixels of a clip's frames together", f"{MAX_CLIP_PIXELS:,}",
          "refused in one line before the frame that passes it is decoded"),
    Limit("a clip's playing time (its frames' durations together)", f"{MAX_CLIP_SECONDS} s",
          "refused in one line at the frame that passes it"),
    Limit("a request body that is not an upload (any route, any content type)", _mib(BODY_BYTES),
          "413 before it is read"),
    Limit(f"a request body's pace after its first {BODY_GRACE_S} s", f"{BODY_MIN_RATE >> 10} KiB/s on average",
          "dropped (408), what it reserved released"),
    Limit("a request body's pause", f"{BODY_GRACE_S} s", "dropped (408), what it reserved released"),
    Limit("a request's head, from the connection's opening", f"{BODY_GRACE_S} s", "the connection closed"),
    Limit("request bodies (not uploads) one client sends at once", str(BODIES_PER_CLIENT), "429, one line"),
    Limit("files in one upload request", str(UPLOAD_PARTS), "413 before the next part is stored"),
    Limit("connections one client (an IPv4 address, an IPv6 /64) holds open, with no proxy in front",
          str(CONNECTIONS_PER_CLIENT), "closed at once, before a byte is read"),
    Limit("uploads one client sends at once", str(OPEN_UPLOADS_PER_CLIENT), "429, one line"),
    Limit("one client's uploads on disk", f"1/{UPLOAD_SHARE} of the disk budget", "507 for that client's next"),
    Limit("requests one client may have waiting", f"{WAITING_PER_CLIENT}, and {QUEUE_SIZE} / (2 × clients waiting)",
          "503, one line"),
    Limit("requests waiting, all clients", str(QUEUE_SIZE), "503, one line"),
    Limit("visitor sessions kept", str(SESSIONS), "the oldest session's state goes"),
    Limit("state one session keeps", f"{SESSION_STATE_BYTES >> 10} KiB", "(the page fetches its maps by key)"),
    Limit("the app's files on disk, counted as the disk does (CCNET_DISK_BUDGET_MB)", f"{DISK_BUDGET_MB} MiB",
          "507 for the next upload"),
    Limit("an upload's life after its last use", f"{UPLOAD_MAX_AGE_S // 60} minutes",
          "deleted with its analyses; its link says it expired"),
    Limit("an image the MCP bridge uploads for a tool call, unused", f"{BRIDGE_UPLOAD_S} s",
          "deleted (the bridge's uploads have an account of their own)"),
    Limit("upload links the server answers", str(LINKS), "the least recently used expires"),
    Limit("upload links one client holds", str(LINKS_PER_CLIENT), "that client's least recently used expires"),
    Limit("network results kept for clicks (all visitors)", f"{ANALYSES} analyses, {_mib(ANALYSES_BYTES)}",
          "the least recently used is dropped (the examples' are kept apart)"),
    Limit("clip results kept for clicks (all visitors)", f"{CLIP_ANALYSES} clips, {_mib(CLIP_ANALYSES_BYTES)}",
          "the least recently used is dropped"),
    Limit("maps kept for pages to fetch (all visitors)", _mib(VIEWER_DATA_BYTES),
          "the least recently viewed image's maps go first"),
    Limit("released models in memory", f"{MODEL_MEMORY_MB} MiB", "the least recently used is unloaded"),
    Limit("released checkpoints on disk", f"{MODEL_CACHE_MB} MiB", "the least recently used is deleted"),
    Limit("SIGTERM or SIGINT to exit, uploads hanging or not", f"{STOP_S} s",
          f"files removed; forced exit at {FORCED_EXIT_S} s"),
)


def limits_table() -> str:
    """The table docs/robustness.md publishes (a test compares the two)."""
    rows = ["| limit | value | beyond it |", "|---|---|---|"]
    rows += [f"| {limit.what} | {limit.value} | {limit.beyond} |" for limit in LIMITS]
    return "\n".join(rows)
