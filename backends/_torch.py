"""PyTorch: on the GPU when CUDA is available, else on the CPU."""

from __future__ import annotations

import numpy as np

from ._base import Backend, BackendUnavailableError


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, torch, xp):
        self._torch = torch
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        super().__init__(xp, device)

    def is_native(self, data):
        return isinstance(data, self._torch.Tensor) and data.device == self.device

    def _from_host(self, host, dtype):
        host = np.asarray(host)
        if not host.flags.writeable:  # e.g. a JAX array's host view; torch wants to own it
            host = host.copy()
        return self._torch.as_tensor(host, dtype=dtype, device=self.device)

    def asarray(self, data, dtype=None):
        if isinstance(data, self._torch.Tensor) and data.device != self.device:
            data = data.to(self.device)
        return super().asarray(data, dtype)

    def to_numpy(self, array):
        return array.detach().cpu().numpy().copy()

    def synchronize(self):
        if self.device.type == "cuda":
            self._torch.cuda.synchronize()


def create() -> Backend:
    try:
        import torch
        from array_api_compat import torch as xp_torch
    except ImportError as exc:
        raise BackendUnavailableError(
            "the 'torch' backend needs PyTorch: pip install torch "
            "(on a CPU-only machine: pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu)"
        ) from exc
    return TorchBackend(torch, xp_torch)
