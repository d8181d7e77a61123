"""Argument types and the model options that several commands share."""
from __future__ import annotations

import argparse
import sys
import unicodedata
from dataclasses import replace

import torch

from ccnet.inference.predictor import Predictor, Protocol
from ccnet.inference.runtime import exported_predictor
from ccnet.weights.load import LoadedModel, load_model


def printable(text: object) -> str:
    """Text for the terminal with its control characters written out (\\x1b, \\u202e, ...): names a
    file or a checkpoint brings (class names, file names) cannot move the cursor, recolour or
    rewrite what the terminal shows."""
    return "".join(char if unicodedata.category(char)[0] != "C" else char.encode("unicode_escape").decode()
                   for char in str(text))


def pair(text: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two integers 'A,B', got {text!r}") from None
    return a, b


def positive_pair(text: str) -> tuple[int, int]:
    a, b = pair(text)
    if a <= 0 or b <= 0:
        raise argparse.ArgumentTypeError(f"expected two positive integers, got {text!r}")
    return a, b


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="'default', a preset name or a checkpoint file")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--amp", choices=("fp16", "bf16"), help="autocast dtype (mainly for CUDA)")
    parser.add_argument("--resize", type=positive_pair, metavar="LONG,SHORT", help="keep-ratio test resize")
    parser.add_argument("--slide", type=positive_pair, metavar="CROP,STRIDE", help="sliding-window inference")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                        help="onnx: export the model to ONNX first and run it with onnxruntime (CPU)")


def make_predictor(args: argparse.Namespace) -> tuple[LoadedModel, Predictor]:
    """Load the model named on the command line, with --resize/--slide overriding its protocol."""
    loaded = load_model(args.model)
    protocol = loaded.protocol
    if args.resize:
        protocol = replace(protocol, test_resize=args.resize)
    if args.slide:
        crop, stride = args.slide
        protocol = replace(protocol, mode="slide", crop=(crop, crop), stride=(stride, stride))
    if args.runtime == "onnx":
        return loaded, onnx_predictor(loaded, protocol)
    return loaded, Predictor(loaded.net, protocol, device=args.device, amp=args.amp)


def onnx_predictor(loaded: LoadedModel, protocol: Protocol) -> Predictor:
    """The model exported to ONNX (with its attention) and loaded by onnxruntime."""
    print(f"exporting {loaded.name} to ONNX ...", file=sys.stderr, flush=True)
    return exported_predictor(loaded.net, protocol, with_attention=loaded.net.config.attention == "cca",
                              threads=torch.get_num_threads())
