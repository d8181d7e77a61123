"""Small shared builders for tests: tiny CCNets and checkpoints made on the spot, and references
for the attention maps written from the paper's definition (plain loops, nothing from ccnet.nn)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ccnet.inference.predictor import Protocol
from ccnet.nn.model import CCNet, CCNetConfig
from ccnet.weights.checkpoints import save_checkpoint

KEYS_FILE = Path(__file__).parent / "data" / "mmseg_ccnet_r50-d8_cityscapes.keys.tsv"  # mmseg R50-D8
TINY = CCNetConfig(num_classes=4, depth=18, stem_channels=(8, 8, 16), base_channels=8,
                   head_channels=16, aux_channels=8)


def tiny_model(seed: int = 0, config: CCNetConfig = TINY, gamma: float = 0.8) -> CCNet:
    """A small random CCNet with non-zero gamma (a zero gamma would hide attention bugs)."""
    torch.manual_seed(seed)
    model = CCNet(config)
    with torch.no_grad():
        if config.attention == "cca":
            model.decode_head.cca.gamma.scale.fill_(gamma)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def tiny_checkpoint(path: Path, seed: int = 0, with_meta: bool = True,
                    classes: tuple[str, ...] = ("road", "car", "sky", "tree")) -> Path:
    model = tiny_model(seed)
    meta = {}
    if with_meta:
        meta = {
            "classes": list(classes),
            "palette": [[128, 64, 128], [0, 0, 142], [70, 130, 180], [107, 142, 35]],
            "ccnet_config": model.config.to_dict(),
            "protocol": Protocol().to_dict(),
        }
    save_checkpoint(path, {"meta": meta, "state_dict": model.state_dict()})
    return path


# ---- references written from the definition, independent of ccnet.nn.attention ------------------
# A criss-cross step's weights are (h, w, h + w): for query cell (r, c), entry j < h is the weight
# it gives to cell (j, c) of its column and entry h + k the weight it gives to cell (r, k) of its row.
# The query cell has an entry in both halves (the column one is always 0); a cell's weight is the
# sum of the entries that name it.

def dense_from_crosses(attn: np.ndarray | torch.Tensor) -> np.ndarray:
    """The (N, N) matrix of one step, N = h * w: row r * w + c holds the weights of query (r, c)."""
    attn = np.asarray(attn, dtype=np.float64)
    h, w = attn.shape[:2]
    dense = np.zeros((h * w, h * w))
    for r in range(h):
        for c in range(w):
            for j in range(h):
                dense[r * w + c, j * w + c] += attn[r, c, j]
            for k in range(w):
                dense[r * w + c, r * w + k] += attn[r, c, h + k]
    return dense


def step_reference(attn: np.ndarray | torch.Tensor, row: int, col: int) -> np.ndarray:
    """The dense (h, w) map of the weights query (row, col) gives at one step."""
    h, w = np.shape(attn)[:2]
    return dense_from_crosses(attn)[row * w + col].reshape(h, w)


def composed_reference(steps: list[np.ndarray | torch.Tensor], row: int, col: int) -> np.ndarray:
    """Row (row * w + col) of A_R @ ... @ A_1 as an (h, w) map, ``steps`` in the order they ran.

    Why this order: the last step's output at u mixes step R-1's outputs on u's cross (A_R), each
    of which mixed step R-2's outputs on its own cross, and so on down to the input (A_1)."""
    h, w = np.shape(steps[0])[:2]
    product = np.eye(h * w)
    for attn in steps:
        product = dense_from_crosses(attn) @ product
    return product[row * w + col].reshape(h, w)


def topk_reference(grid_map: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """The k largest weights as (row, col, weight) by a full stable sort: ties keep index order."""
    flat = np.asarray(grid_map, dtype=np.float64).ravel().tolist()
    width = np.shape(grid_map)[1]
    order = sorted(range(len(flat)), key=lambda i: -flat[i])
    return [(i // width, i % width, flat[i]) for i in order[:k]]
