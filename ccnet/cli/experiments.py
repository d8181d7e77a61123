"""The experiments that reproduce the results: `train`, `evaluate` (mIoU on a dataset or on
synthetic scenes) and `ablation` (every head variant on one budget)."""
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


@one_report
def cmd_ablation(args: argparse.Namespace) -> int:
    with distributed.session(args.device) as group:
        json_out = group.checked(lambda: _ablation_output(args.json) if group.is_main else None)
        result = run(args, group)
    if result is None:  # a rank other than 0: rank 0 writes the table
        return 0
    if json_out:
        write_text(json_out, json.dumps(result, indent=1))
    print(markdown_table(result))
    return 0


def _register_ablation(subparsers: argparse._SubParsersAction) -> None:
    defaults = TrainConfig()
    p = subparsers.add_parser("ablation", help="train and score every head variant on the same budget")
    p.add_argument("--out", default="runs/ablation", help="folder of the arms' runs (resumable)")
    p.add_argument("--arms", help=f"comma-separated subset of {','.join(ARMS)}")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--iters", type=int, default=defaults.iters)
    p.add_argument("--batch", type=int, default=defaults.batch)
    p.add_argument("--height", type=int, default=defaults.height)
    p.add_argument("--width", type=int, default=defaults.width)
    p.add_argument("--gamma-init", type=float, default=defaults.gamma_init, help="initial attention scale")
    p.add_argument("--curriculum", type=float, default=defaults.curriculum,
                   help="share of the run that mixes in scenes with the cue one step away")
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
