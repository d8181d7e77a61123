"""`python -m tools.video_heads`: the heads of a video ablation's runs (`python -m ccnet ablation
--video`, docs/video.md), collected into the asset ccnet.weights.video reads
(assets/ccnet_default_video.pt): heads only, on default's backbone, with each arm's training record
and held-out scores, and the arm `default:video` stands for: the best 3D criss-cross head."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ccnet.cli.outputs import checked_output
from ccnet.errors import CCNetError
from ccnet.nn.variants import BY_NAME
from ccnet.weights.checkpoints import read_checkpoint, save_checkpoint
from ccnet.weights.family import BASE
from ccnet.weights.video import HEAD_PREFIX, VIDEO_FILE
from tools._cli import run


def write_video_heads(runs: dict[str, Path], best: str, scores: dict, path: Path = VIDEO_FILE) -> Path:
    """One file of every arm's head (keys ``ARM.decode_head.*``), its record, and ``best``."""
    if best not in runs:
        raise CCNetError(f"the best arm {best!r} is not among the heads collected: {', '.join(runs)}")
    state_dict, arms = {}, {}
    for arm, checkpoint in runs.items():
        weights, meta = read_checkpoint(checkpoint)
        state_dict.update({f"{arm}.{k}": v for k, v in weights.items() if k.startswith(HEAD_PREFIX)})
        arms[arm] = {"head": meta["head"], "init": meta["init"], "train": meta["train"], "scores": scores.get(arm, {})}
    save_checkpoint(path, {"meta": {"backbone": BASE, "best": best, "arms": arms}, "state_dict": state_dict})
    return path


def video_heads_command(args: argparse.Namespace) -> int:
    result = json.loads(Path(args.ablation).read_text())
    arms = args.arms.split(",") if args.arms else list(result["arms"])
    seed = str(args.seed)
    runs = {arm: Path(args.runs) / f"{arm}_s{seed}" / "model.pt" for arm in arms}
    missing = [str(path) for path in runs.values() if not path.is_file()]
    if missing:
        raise CCNetError(f"train them first (python -m ccnet ablation --video); missing: {', '.join(missing)}")
    # the explorer's model is a criss-cross one: neither the per-frame baseline nor the non-local comparison
    criss_cross = [arm for arm in arms if arm in BY_NAME and BY_NAME[arm].kind == "criss-cross-3d"]
    if not (args.best or criss_cross):
        raise CCNetError(f"no 3D criss-cross head among {', '.join(arms)} for default:video; name one with --best")
    best = args.best or max(criss_cross, key=lambda arm: result["arms"][arm]["temporal_context_miou"]["mean"])
    scores = {arm: next(r for r in result["arms"][arm]["runs"] if str(r["seed"]) == seed) for arm in arms}
    out = checked_output(args.out, "--out", (".pt",))
    path = write_video_heads(runs, best, scores, out)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, heads {', '.join(runs)} (seed {seed}); default:video = {best}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.video_heads",
                                     description="collect the video ablation's heads into one asset")
    parser.add_argument("--runs", default="runs/video_ablation", help="the video ablation's folder of runs")
    parser.add_argument("--ablation", default="assets/video_ablation.json", help="its results (the --json file)")
    parser.add_argument("--arms", help="the arms to ship (default: every arm of the results)")
    parser.add_argument("--seed", type=int, default=0, help="whose run of each arm")
    parser.add_argument("--best", help="the arm default:video stands for (default: the 3D criss-cross head of the best "
                        "temporal context mIoU)")
    parser.add_argument("--out", default=str(VIDEO_FILE))
    return run(parser, video_heads_command, argv)


if __name__ == "__main__":
    sys.exit(main())
