"""The experiments that reproduce the results: `train`, `evaluate` (mIoU on a dataset or on
synthetic scenes) and `ablation` (every head variant on one budget; `--video`: the heads over clips)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ccnet.cli.common import add_model_args, make_predictor
from ccnet.cli.outputs import checked_output, write_text
from ccnet.errors import CCNetError
from ccnet.experiments import distributed
from ccnet.experiments.ablation import ARMS, markdown_table, run
from ccnet.experiments.distributed import Group, one_report
from ccnet.experiments.evaluate import DATASETS, evaluate_dataset, synthetic_report
from ccnet.experiments.train import TrainConfig, train
from ccnet.experiments.video_train import ARMS as VIDEO_ARMS
from ccnet.experiments.video_train import VideoTrainConfig
from ccnet.inference.predictor import Predictor
from ccnet.weights.load import LoadedModel


@one_report
def cmd_train(args: argparse.Namespace) -> int:
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__})
    with distributed.session(args.device) as group:
        train(cfg, resume=args.resume, log=lambda msg: print(msg, file=sys.stderr, flush=True), device=args.device,
              group=group)
    return 0


FLAG_HELP = {
    "ccl": "add the category consistent loss",
    "merge_context": "label car and truck as one class (car), e.g. to train a backbone for --backbone",
}


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a small CCNet on synthetic street scenes (CPU)")
    defaults = TrainConfig()
    for name, value in asdict(defaults).items():
        if isinstance(value, bool):
            p.add_argument(f"--{name.replace('_', '-')}", dest=name, action="store_true", help=FLAG_HELP[name])
        elif name == "backbone":
            p.add_argument("--backbone", default="", metavar="CHECKPOINT",
                           help="train only the head, on this model's frozen backbone")
        elif name == "attention":
            p.add_argument("--attention", choices=("cca", "nonlocal", "none"), default=value)
        else:
            p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=type(value), default=value)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--device", default="cpu",
                   help="cpu (default), cuda or auto; under torchrun each rank takes cuda:LOCAL_RANK (docs/scale.md)")
    p.set_defaults(func=cmd_train)


class StepLine:
    """'evaluating 12/500, 0.41 s/image' redrawn on stderr."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int | None) -> None:
        rate = (time.perf_counter() - self.start) / done
        sys.stderr.write(f"\revaluating {done}/{total or '?'}, {rate:.2f} s/image ")
        sys.stderr.flush()
        if done == total:
            sys.stderr.write("\n")


class RankLine:
    """'[rank 1] evaluating 12/250, 0.41 s/image' as whole lines (ranks share stderr): the first
    image, every tenth of the shard and the last."""

    def __init__(self, group: Group) -> None:
        self.group, self.start = group, time.perf_counter()

    def __call__(self, done: int, total: int | None) -> None:
        if done == 1 or done == total or (total and done % max(1, total // 10) == 0):
            rate = (time.perf_counter() - self.start) / done
            self.group.log(f"evaluating {done}/{total or '?'}, {rate:.2f} s/image")


def per_class_table(result: dict) -> str:
    width = max(len(name) for name in result["per_class"])
    rows = [
        f"{name.ljust(width)}  {'-' if iou is None else f'{100 * iou:6.2f}'}"
        for name, iou in result["per_class"].items()
    ]
    miou = "-" if result["miou"] is None else f"{100 * result['miou']:.2f}"
    return "\n".join(rows + [f"{'mIoU'.ljust(width)}  {miou}  ({result['images']} images)"])


def _prepare_evaluation(args: argparse.Namespace, group: Group) -> tuple[Path | None, LoadedModel, Predictor]:
    if args.data is not None and args.dataset is None:
        raise CCNetError(f"--data needs --dataset ({'|'.join(DATASETS)})")
    if args.limit is not None and args.limit < 1:
        raise CCNetError("--limit must be at least 1")
    json_out = checked_output(args.json_out, "--json", (".json",))
    args = argparse.Namespace(**{**vars(args), "device": group.device_for(args.device)})  # torchrun: cuda:LOCAL_RANK
    return (json_out, *make_predictor(args))


@one_report
def cmd_evaluate(args: argparse.Namespace) -> int:
    with distributed.session(args.device) as group:
        json_out, loaded, predictor = group.node_first(_prepare_evaluation, args, group)
        progress = RankLine(group) if group.distributed else StepLine()
        options = dict(multiscale=args.multiscale, flip=args.flip, group=group, with_matrix=args.matrix)
        if args.synthetic is not None:
            result = synthetic_report(predictor, args.synthetic, args.seed, args.height, args.width, progress,
                                      aligned=args.aligned, **options)
        else:
            result = evaluate_dataset(predictor, args.data, args.dataset, limit=args.limit, progress=progress,
                                      **options)
        if not group.is_main:
            return 0
    result = {"model": loaded.name, **result}
    print(per_class_table(result), file=sys.stderr)
    text = json.dumps(result)
    if json_out:
        write_text(json_out, text + "\n")
    print(text)
    return 0


def _register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="mIoU on a dataset folder or on synthetic scenes")
    add_model_args(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="DIR", help="dataset root in its standard layout")
    source.add_argument("--synthetic", type=int, metavar="N", help="score N held-out synthetic scenes")
    p.add_argument("--dataset", choices=DATASETS, help="layout and classes of --data")
    p.add_argument("--multiscale", action="store_true", help="ratios 0.5..1.75 of the test scale, averaged")
    p.add_argument("--flip", action="store_true", help="average with the horizontal mirror")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N images (sorted)")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="also write the result to this file")
    p.add_argument("--matrix", action="store_true",
                   help="add the confusion matrix (rows: ground truth, columns: prediction) to the result")
    p.add_argument("--seed", type=int, default=0, help="synthetic: scene i uses seed*100000+i")
    p.add_argument("--aligned", action="store_true",
                   help="synthetic: the curriculum's layout, the panel one criss-cross step from the vehicles")
    p.add_argument("--height", type=int, default=256, help="synthetic scene height")
    p.add_argument("--width", type=int, default=512, help="synthetic scene width")
    p.set_defaults(func=cmd_evaluate)


def _ablation_output(path: str | None) -> Path | None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return checked_output(path, "--json", (".json",))


def _ablation_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """The options each ablation leaves unset take its own defaults; the image-only ones are refused
    with --video (and --lr without it) in one line."""
    if args.video:
        given = [flag for flag, value in (("--frozen-backbone", args.frozen_backbone), ("--backbone", args.backbone),
                                          ("--gamma-init", args.gamma_init)) if value not in (None, False)]
        if given:
            raise CCNetError(f"{given[0]} applies to the image ablation; --video trains heads on default's backbone")
        if distributed.launched():
            raise CCNetError("--video runs in one process (its arms are separate processes already: --jobs), "
                             "not under torchrun")
    elif args.lr is not None:
        raise CCNetError("--lr applies to --video (the image ablation trains at python -m ccnet train's rate)")
    own = VideoTrainConfig() if args.video else TrainConfig()
    fallback = {"out": "runs/video_ablation" if args.video else "runs/ablation", "iters": own.iters,
                "batch": own.batch, "curriculum": own.curriculum, "lr": VideoTrainConfig.lr,
                "gamma_init": TrainConfig.gamma_init}
    return argparse.Namespace(**{**vars(args), **{k: v for k, v in fallback.items() if getattr(args, k) is None}})


@one_report
def cmd_ablation(args: argparse.Namespace) -> int:
    args = _ablation_defaults(args)
    if args.video:
        from ccnet.experiments import video_ablation  # its runs start processes: imported when asked for

        json_out = _ablation_output(args.json)
        result, table = video_ablation.run(args), video_ablation.markdown_table
    else:
        with distributed.session(args.device) as group:
            json_out = group.checked(lambda: _ablation_output(args.json) if group.is_main else None)
            result, table = run(args, group), markdown_table
        if result is None:  # a rank other than 0: rank 0 writes the table
            return 0
    if json_out:
        write_text(json_out, json.dumps(result, indent=1))
    print(table(result))
    return 0


def _register_ablation(subparsers: argparse._SubParsersAction) -> None:
    defaults, video = TrainConfig(), VideoTrainConfig()
    p = subparsers.add_parser("ablation", help="train and score every head variant on the same budget")
    p.add_argument("--video", action="store_true",
                   help="the video ablation: heads over synthetic clips on default's frozen backbone (docs/video.md)")
    p.add_argument("--out", help="folder of the arms' runs, resumable (runs/ablation; --video runs/video_ablation)")
    p.add_argument("--arms", help=f"comma-separated subset of {','.join(ARMS)} (--video: {','.join(VIDEO_ARMS)})")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--iters", type=int, help=f"iterations per run ({defaults.iters}; --video {video.iters})")
    p.add_argument("--batch", type=int, help=f"scenes per iteration ({defaults.batch}; --video: clips, {video.batch})")
    p.add_argument("--height", type=int, default=defaults.height)
    p.add_argument("--width", type=int, default=defaults.width)
    p.add_argument("--gamma-init", type=float, help="initial attention scale (0, as the paper)")
    p.add_argument("--curriculum", type=float, help=f"share of the run that mixes in scenes with the cue one step "
                   f"away ({defaults.curriculum}; --video: clips with it two steps away, {video.curriculum})")
    p.add_argument("--lr", type=float, help=f"--video: the heads' learning rate ({video.lr})")
    p.add_argument("--clips", type=int, default=2048, help="--video: training clips in the cached pool")
    p.add_argument("--aligned-clips", type=int, default=1024, help="--video: the curriculum's clips in its pool")
    p.add_argument("--eval-clips", type=int, default=64, help="--video: held-out clips scored")
    frozen = p.add_mutually_exclusive_group()
    frozen.add_argument("--frozen-backbone", action="store_true",
                        help="first train one backbone per seed with car and truck merged, then only the heads")
    frozen.add_argument("--backbone", metavar="CHECKPOINT",
                        help="train only the heads on this model's frozen backbone; {seed} in the path "
                             "gives each seed its own")
    p.add_argument("--backbone-iters", type=int, default=1000, help="iterations of that backbone stage")
    p.add_argument("--jobs", type=int, default=2, help="arms trained at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per arm")
    p.add_argument("--device", default="cpu",
                   help="cpu (default), cuda or auto; under torchrun each rank's runs use cuda:LOCAL_RANK")
    p.add_argument("--eval-scenes", type=int, default=64)
    p.add_argument("--eval-seed", type=int, default=1)
    p.add_argument("--eval-height", type=int, default=256)
    p.add_argument("--eval-width", type=int, default=512)
    p.add_argument("--json", help="write the results here (e.g. assets/ablation.json)")
    p.set_defaults(func=cmd_ablation)


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_train(subparsers)
    _register_evaluate(subparsers)
    _register_ablation(subparsers)
