"""`python -m ccnet train` with plain SGD in place of AdamW, for tests/experiments/test_distributed.py.

Adam's first steps move every weight by about lr * sign(gradient), so a weight whose gradient is
float noise (|g| around 1e-8) moves by +-lr depending on the summation order: a run on two ranks
and one on one process then differ by up to lr, whatever the gradients' agreement. SGD moves
weights in proportion to their gradients, so the weights compare as closely as the gradients do.
"""
import sys

import torch

from ccnet.cli import main


def sgd(params, lr, weight_decay):
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


if __name__ == "__main__":
    torch.optim.AdamW = sgd
    sys.exit(main(["train", *sys.argv[1:]]))
