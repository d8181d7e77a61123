"""Reading and writing checkpoints safely: weights_only loading, strict fit, atomic saves."""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from ccnet.errors import CheckpointError
from ccnet.nn.attention import upgrade_legacy_gamma
from ccnet.nn.model import CCNet, CCNetConfig, config_from_state_dict
from ccnet.weights import authors

CCA_PREFIX = "decode_head.cca."


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """(state_dict, meta) from an mmseg-style ``{'meta', 'state_dict'}`` file or a bare state dict.

    Loaded with ``weights_only=True``: a file that needs arbitrary code to unpickle is refused.
    A file in the CCNet authors' own layout is converted to ours, with its config and protocol
    in the returned meta (ccnet/weights/authors.py).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):  # zip archive or legacy pickle
        raise CheckpointError(f"{path.name} is not a PyTorch checkpoint (unknown file format)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if "Unsupported" in ln or "global" in ln.lower()]
        reason = (lines[0] if lines else "arbitrary objects")[:120]
        raise CheckpointError(f"{path.name}: refused, it holds more than tensors (weights_only): {reason}") from None
    except Exception as err:  # noqa: BLE001 - torch raises several types for a file that is not a checkpoint
        raise CheckpointError(f"{path.name} is not a PyTorch checkpoint ({type(err).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state_dict, meta = obj["state_dict"], obj.get("meta") or {}
    elif isinstance(obj, dict) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        state_dict, meta = obj, {}
    else:
        raise CheckpointError(f"{path.name} holds no state_dict")
    state_dict = normalise_keys(state_dict)
    if authors.is_authors_layout(state_dict):
        return authors.convert(state_dict)
    return state_dict, meta if isinstance(meta, dict) else {}


def normalise_keys(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop a DataParallel ``module.`` prefix and map the legacy ``gamma`` [1] to ``gamma.scale`` []."""
    out = {k.removeprefix("module."): v for k, v in state_dict.items()}
    upgrade_legacy_gamma(out, CCA_PREFIX)
    return out


def key_problems(expected: dict[str, Tensor], state_dict: dict[str, Tensor], shapes: bool = True) -> list[str]:
    """'missing keys (n): a, b ...', 'unexpected keys ...' and 'wrong shapes ...', the empty ones left out."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)}!={tuple(v.shape)}"
        for k, v in expected.items()
        if shapes and k in state_dict and state_dict[k].shape != v.shape
    ]
    return [
        f"{label} ({len(keys)}): {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
        if keys
    ]


def check_fit(model: torch.nn.Module, state_dict: dict[str, Tensor]) -> None:
    """Raise a one-line CheckpointError naming missing, unexpected and mis-shaped keys."""
    problems = key_problems(model.state_dict(), state_dict)
    if problems:
        raise CheckpointError("checkpoint does not fit the CCNet architecture: " + "; ".join(problems))


def misfit_error(state_dict: dict[str, Tensor], reason: str) -> CheckpointError:
    """When no architecture can be inferred at all, name what differs from mmseg's CCNet layout
    by module (``backbone.layer3``, ``decode_head.cca``, ...), which every depth shares: the
    modules missing, and the unexpected keys themselves."""
    with torch.device("meta"):  # no memory, no time
        reference = {_module(k) for k in CCNet(CCNetConfig()).state_dict()}
    present = {_module(k) for k in state_dict}
    missing = sorted(reference - present)
    unexpected = [k for k in state_dict if _module(k) not in reference]
    problems = [
        f"{label} ({len(items)}): {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
        for label, items in (("missing modules", missing), ("unexpected keys", unexpected)) if items
    ]
    return CheckpointError(f"checkpoint does not fit the CCNet architecture ({reason}): "
                           + ("; ".join(problems) or "its keys have mmseg's names but not its shapes"))


def _module(key: str) -> str:
    return ".".join(key.split(".")[:2])


def build_model(state_dict: dict[str, Tensor], meta: dict | None = None) -> CCNet:
    """A CCNet in eval mode with the checkpoint loaded strictly; config from meta or inferred."""
    meta = meta or {}
    try:
        if isinstance(meta.get("ccnet_config"), dict):
            config = CCNetConfig.from_dict(meta["ccnet_config"])
        else:
            config = config_from_state_dict(state_dict, recurrence=int(meta.get("recurrence", 2)))
        model = CCNet(config)
    except (ValueError, TypeError) as err:
        raise misfit_error(state_dict, str(err)) from None
    check_fit(model, state_dict)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write atomically: a temporary file in the same folder, renamed only once fully written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
