"""`python -m tools.family`: the default model's sibling heads, each trained on its frozen backbone
(assets/MODEL_CARD.md), collected into one asset (assets/ccnet_default_family.pt) that
ccnet.weights.family reads."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ccnet.cli.outputs import checked_output
from ccnet.errors import CCNetError
from ccnet.weights.checkpoints import read_checkpoint, save_checkpoint
from ccnet.weights.family import BASE, FAMILY_FILE, HEAD_PREFIX, SIBLINGS
from tools._cli import run


def write_family(heads: dict[str, Path], path: Path = FAMILY_FILE) -> Path:
    """Collect each arm's head (and its config and training record) from its training run."""
    state_dict, arms = {}, {}
    for arm, checkpoint in heads.items():
        weights, meta = read_checkpoint(checkpoint)
        state_dict.update({f"{arm}.{k}": v for k, v in weights.items() if k.startswith(HEAD_PREFIX)})
        arms[arm] = {"ccnet_config": meta["ccnet_config"], "train": meta.get("train")}
    save_checkpoint(path, {"meta": {"backbone": BASE, "arms": arms}, "state_dict": state_dict})
    return path


def family_command(args: argparse.Namespace) -> int:
    heads = {arm: Path(args.runs) / arm / "model.pt" for arm in SIBLINGS}
    missing = [str(path) for path in heads.values() if not path.is_file()]
    if missing:
        raise CCNetError(f"train the siblings first (assets/MODEL_CARD.md); missing: {', '.join(missing)}")
    out = checked_output(args.out, "--out", (".pt",))
    print(f"{write_family(heads, out)}: {out.stat().st_size / 1e6:.1f} MB, heads {', '.join(heads)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.family",
                                     description="collect the default model's sibling heads into one asset")
    parser.add_argument("--runs", default="runs/family", help="folder of the siblings' training runs (one per arm)")
    parser.add_argument("--out", default=str(FAMILY_FILE))
    return run(parser, family_command, argv)


if __name__ == "__main__":
    sys.exit(main())
