"""Small shared builders for tests: tiny CCNets and checkpoints made on the spot."""
from __future__ import annotations

from pathlib import Path

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


def tiny_checkpoint(path: Path, seed: int = 0, with_meta: bool = True) -> Path:
    model = tiny_model(seed)
    meta = {}
    if with_meta:
        meta = {
            "classes": ["road", "car", "sky", "tree"],
            "palette": [[128, 64, 128], [0, 0, 142], [70, 130, 180], [107, 142, 35]],
            "ccnet_config": model.config.to_dict(),
            "protocol": Protocol().to_dict(),
        }
    save_checkpoint(path, {"meta": meta, "state_dict": model.state_dict()})
    return path
