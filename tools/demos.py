"""`python -m tools.demos demos/`: the demo scenes, eight held-out street scenes with their coloured labels."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from ccnet.experiments.scenes import colorize_label, generate_scene
from tools._cli import run

DEMO_SEEDS = tuple(range(1, 9))


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
        "and flips car <-> truck (and the panel's traffic sign <-> traffic light) in the label.", ""])
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
