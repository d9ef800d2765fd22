"""Saving and loading models as one portable ``.npz`` file (no pickle).

The file holds ``mlp_format`` (a version number), ``config`` (JSON: layer
sizes, activations, loss, dtype, seed) and the weights ``W0, b0, W1, b1, ...``
as NumPy arrays; optionally the optimizer (JSON) and its state
(``opt_state_0, ...`` plus the state's structure in JSON). Any backend reads it.
Writes go to a temporary file in the same folder, then an atomic rename.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A file that is not a readable mlp model (truncated, corrupted or foreign)."""


def _flatten(tree, leaves):
    """JSON structure of a state made of tuples, lists, None and arrays."""
    if tree is None:
        return None
    if isinstance(tree, (tuple, list)):
        out = {"seq": [_flatten(t, leaves) for t in tree], "tuple": isinstance(tree, tuple)}
        if hasattr(type(tree), "_fields"):  # an optimizer state (NamedTuple)
            out["state"] = type(tree).__name__
        return out
    leaves.append(tree)
    return {"leaf": len(leaves) - 1}


def _unflatten(struct, leaves):
    if struct is None:
        return None
    if "leaf" in struct:
        return leaves[struct["leaf"]]
    items = [_unflatten(s, leaves) for s in struct["seq"]]
    if "state" in struct:
        from .optimizers import STATES

        if struct["state"] not in STATES:
            raise ValueError(f"unknown optimizer state {struct['state']!r}")
        return STATES[struct["state"]](*items)
    return tuple(items) if struct["tuple"] else items


def _optimizer_config(opt):
    from .optimizers import optimizer_config

    return optimizer_config(opt)


def save(model, path, *, include_optimizer=False):
    path = os.fspath(path)
    backend = model.backend
    config = {
        "layer_sizes": list(model.layer_sizes), "activation": model.activation,
        "output_activation": model.output_activation, "loss": model.loss_name,
        "init": model.init, "dtype": model.dtype_name, "seed": model.seed,
    }
    arrays = {"mlp_format": np.asarray(FORMAT_VERSION), "config": np.asarray(json.dumps(config))}
    for i, (W, b) in enumerate(model.get_weights()):
        arrays[f"W{i}"], arrays[f"b{i}"] = W, b
    if include_optimizer:
        if model.optimizer_ is None:
            raise ValueError("include_optimizer=True, but the model has not been trained yet")
        leaves = []
        struct = _flatten(model.optimizer_state_, leaves)
        arrays["optimizer"] = np.asarray(json.dumps(_optimizer_config(model.optimizer_)))
        arrays["optimizer_state"] = np.asarray(json.dumps(struct))
        for i, leaf in enumerate(leaves):
            arrays[f"opt_state_{i}"] = backend.to_numpy(leaf)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save to {path!r}: folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".mlp-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"


def _read(path):
    """Every array of the ``.npz`` at ``path``, read without pickle.

    The file's first bytes are checked before NumPy sees it, so that a file of
    another kind (a pickle, a single ``.npy``, text) is refused as such.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ModelFileError(f"{path!r} is a folder, not a model file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_NPY_MAGIC))
    except OSError as exc:
        raise ModelFileError(f"{path!r} cannot be read: {exc}") from exc
    if not head:
        raise ModelFileError(f"{path!r} is empty (0 bytes): not an mlp model file; was its "
                             "writing interrupted?")
    if head.startswith(_NPY_MAGIC):
        raise ModelFileError(f"{path!r} is a single NumPy array (.npy), not an mlp model "
                             "(.npz written by MLP.save)")
    if not head.startswith(_ZIP_MAGIC):
        raise ModelFileError(f"{path!r} is not an mlp model file (not an .npz archive; "
                             f"it starts with {head[:4]!r})")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error) as exc:
        raise ModelFileError(f"{path!r} is not a complete mlp model file: it is truncated or "
                             f"corrupted ({exc})") from exc
    except ValueError as exc:  # object arrays (which would need pickle), bad .npy headers
        reason = str(exc)
        if "pickle" in reason:
            raise ModelFileError(f"{path!r} cannot be read safely: it holds Python objects, "
                                 f"which only pickle could load ({reason})") from exc
        raise ModelFileError(f"{path!r} is not a complete mlp model file: it is truncated or "
                             f"corrupted ({reason})") from exc


def _optimizer(opt_cfg):
    from .optimizers import from_config

    return from_config(opt_cfg)


def load(path, backend=None):
    """A model from a file written by `MLP.save`, on ``backend`` (None: ``$MLP_BACKEND``).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError (a ValueError)
        The file is empty, truncated, corrupted, or not an mlp model; the
        message names the file and the problem. Nothing in the file is ever
        executed: arrays are read with ``allow_pickle=False`` and the rest is JSON.
    """
    from .model import MLP

    data = _read(path)
    name = repr(os.fspath(path))
    if "mlp_format" not in data or "config" not in data:
        raise ModelFileError(f"{name} is an .npz file but not an mlp model "
                             f"(it holds {sorted(data)[:6]})")
    try:
        version = int(data["mlp_format"])
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{name} holds a damaged mlp model: its format number "
                             f"{data['mlp_format']!r} is not an integer") from exc
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{name} was written by a newer mlp "
                             f"(format {version}; this one reads up to {FORMAT_VERSION})")
    try:
        config = json.loads(str(data["config"]))
        if not isinstance(config, dict):
            raise ValueError(f"its config is {type(config).__name__}, not a JSON object")
        keys = ("layer_sizes", "activation", "output_activation", "loss", "init", "dtype",
                "seed")
        missing = [k for k in keys if k not in config]
        if missing:
            raise ValueError(f"its config lacks {', '.join(missing)}")
        model = MLP(config["layer_sizes"], activation=config["activation"],
                    output_activation=config["output_activation"], loss=config["loss"],
                    init=config["init"], dtype=config["dtype"], seed=config["seed"],
                    backend=backend)
        n_layers = len(model.layer_sizes) - 1
        absent = [k for i in range(n_layers) for k in (f"W{i}", f"b{i}") if k not in data]
        if absent:
            raise ValueError(f"the weights {', '.join(absent)} are missing")
        model.set_weights([(data[f"W{i}"], data[f"b{i}"]) for i in range(n_layers)])
        if "optimizer" in data:
            opt = _optimizer(json.loads(str(data["optimizer"])))
            struct = json.loads(str(data["optimizer_state"]))
            n_leaves = sum(1 for k in data if k.startswith("opt_state_"))
            leaves = [model.backend.asarray(data[f"opt_state_{i}"]) for i in range(n_leaves)]
            model.optimizer_ = opt
            model.optimizer_state_ = _unflatten(struct, leaves)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        # json.JSONDecodeError is a ValueError
        what = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelFileError(f"{name} holds a damaged mlp model: {what}") from exc
    return model
