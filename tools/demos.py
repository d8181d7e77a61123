"""`python -m tools.demos demos/`: the demo scenes, eight held-out street scenes with their coloured labels,
and the demo clips, three held-out street clips (ccnet.experiments.street_clips) as lossless animated WebP."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from ccnet.experiments.scenes import colorize_label, generate_scene
from ccnet.experiments.street_clips import generate_clip
from tools._cli import run

DEMO_SEEDS = tuple(range(1, 9))
# split `demo` of the clips, 128x256 (the embedded model's scene size), odd seeds car, even truck: three
# of seeds 1-16 where default:video labels the vehicles of the frames without the panel right
CLIP_SEEDS = (10, 1, 4)
CLIP_FRAME_MS = 500


def write_clips(out: Path) -> tuple[list[Path], list[str]]:
    """The demo clips (lossless animated WebP, frames exactly as rendered) and their README rows."""
    written, rows = [], []
    for seed in CLIP_SEEDS:
        clip = generate_clip(seed, split="demo", cue="car" if seed % 2 else "truck")
        path = out / f"clip_seed{seed}_{clip.cue}.webp"
        first, *rest = (Image.fromarray(frame) for frame in clip.frames)
        first.save(path, "WEBP", save_all=True, append_images=rest, lossless=True, quality=50, method=4,
                   duration=CLIP_FRAME_MS, loop=0)
        written.append(path)
        rows.append(f"| `{path.name}` | {seed} | demo | {clip.cue} | {len(clip.frames)} | {clip.panel_frame} |")
    return written, rows


def write_demos(out: Path) -> list[Path]:
    """Demo PNGs (image + coloured label) at 256x512, odd seeds car, even seeds truck."""
    out.mkdir(parents=True, exist_ok=True)
    rows, written = [], []
    for seed in DEMO_SEEDS:
        scene = generate_scene(seed, split="demo", cue="car" if seed % 2 else "truck")
        name = f"street_seed{seed}_{scene.cue}"
        Image.fromarray(scene.image).save(out / f"{name}.png")
        Image.fromarray(colorize_label(scene.label)).save(out / f"{name}_label.png")
        written += [out / f"{name}.png", out / f"{name}_label.png"]
        rows.append(f"| `{name}.png` | `{name}_label.png` | {seed} | demo | {scene.cue} |")
    clips, clip_rows = write_clips(out)
    written += clips
    readme = "\n".join([
        "# Demo scenes", "",
        "Written by `python -m tools.demos demos/` (256x512, split `demo`). The cue "
        "is set with `generate_scene(seed, split=\"demo\", cue=...)`: odd seeds car, even "
        "seeds truck; the `_label` files use the Cityscapes palette.", "",
        "| image | label (Cityscapes colours) | seed | split | cue |",
        "|---|---|---|---|---|", *rows, "",
        "Every vehicle in a scene is drawn by the same class-agnostic process; whether all of "
        "them are labelled `car` or `truck` is decided only by the one big traffic sign high "
        "in the scene: a blue panel means car, a red/orange panel means truck. The panel "
        "shares no row and no column with any vehicle (margin >= 2 feature cells at stride 8) "
        "and is at least a quarter of the image width away, so from a vehicle pixel one "
        "criss-cross attention step (own row and column) cannot see the sign, while two steps "
        "can. Re-rendering a scene with the other cue changes only the panel's inner pixels "
        "and flips car <-> truck (and the panel's traffic sign <-> traffic light) in the label.", "",
        "## Demo clips", "",
        "Five frames of 128x256 each (split `demo` of `ccnet.experiments.street_clips`, lossless animated WebP, "
        f"{CLIP_FRAME_MS} ms a frame), for the app's video mode. The panel is visible in one frame only "
        "(`panel frame`, counted from 0); in the others foliage hides it, and the vehicles of those frames "
        "need the clip's time axis to be labelled car or truck (docs/video.md). The seeds are three of 1-16 "
        "where the shipped video head (`default:video`, 3D R = 3) labels those vehicles right.", "",
        "| clip | seed | split | cue | frames | panel frame |", "|---|---|---|---|---|---|", *clip_rows, ""])
    (out / "README.md").write_text(readme)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demos", description="write the demo scenes")
    parser.add_argument("out", type=Path, help="folder for the PNGs, e.g. demos/")

    def write(args: argparse.Namespace) -> int:
        for path in write_demos(args.out):
            print(path)
        return 0

    return run(parser, write, argv)


if __name__ == "__main__":
    sys.exit(main())
