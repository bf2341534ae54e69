"""Mixed precision, ``torch.compile`` and host-to-device copies for the training loops, in one place.

- ``Precision.of(name, device)``: ``fp32`` (the default) runs the loops exactly as without this
  module: no autocast, plain ``loss.backward()`` and ``optimizer.step()``, nothing added to the
  checkpoints. ``bf16``: the forward passes under ``torch.autocast(device.type, torch.bfloat16)``
  (CUDA and CPU); no loss scaling (bf16 has fp32's exponent range). ``fp16``: autocast with
  ``torch.float16`` and a ``torch.amp.GradScaler`` (scale the loss, unscale before gradient
  clipping, step, update); CUDA only: on the CPU it is refused with one line. torch does run CPU
  autocast in fp16, but without fp16 matrix units it is slow (on this project's AVX-512 machine a
  512x512 linear layer: fp16 23 ms, fp32 5.7 ms, bf16 1.3 ms) and it would need loss scaling that
  bf16 does not: on the CPU use bf16.
  The scaler's state goes into ``last.pt`` (key ``scaler``) so a resumed fp16 run keeps its scale.
- ``maybe_compile(module, enabled)``: ``module.compile()`` in place (the state-dict keys and the
  checkpoints stay those of the plain module); a no-op when not enabled.
- ``to_device(tensor, device)``: to a CUDA device through pinned memory with ``non_blocking=True``;
  elsewhere the plain ``.to(device)``.
- ``digest_fields(doc)``: a train section's resume-digest fields without ``precision`` / ``compile``
  at their defaults, so the digest of a default run is that of the code before these params
  existed, while a run under another precision (or compiled) never resumes an fp32 one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from pipeline.names import PRECISIONS
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    name: str
    device_type: str
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def of(cls, name: str, device: torch.device | str) -> "Precision":
        from pipeline.errors import ParamsError

        device_type = torch.device(device).type
        if name not in PRECISIONS:
            raise ParamsError(f"precision={name!r} must be one of {', '.join(PRECISIONS)}")
        if name == "fp16" and device_type != "cuda":
            raise ParamsError(f"precision=fp16 needs a CUDA device (this run is on {device_type}); use bf16 or fp32")
        scaler = torch.amp.GradScaler("cuda") if name == "fp16" else None
        return cls(name, device_type, scaler)

    @property
    def enabled(self) -> bool:
        return self.name != "fp32"

    def autocast(self):
        """The forward pass's context: autocast in the run's dtype, nothing for fp32."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=_DTYPES[self.name])

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to call ``backward`` on (scaled under fp16)."""
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def backward(self, loss: torch.Tensor) -> None:
        self.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, parameters=None, grad_clip: float = 0.0) -> None:
        """Clip (when ``grad_clip > 0``, on unscaled gradients) and step; fp16: then update the scale."""
        if self.scaler is not None:
            if grad_clip > 0:
                self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
            self.scaler.step(optimizer)
            self.scaler.update()
            return
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimizer.step()

    def grad_scale(self) -> float | None:
        """The current loss scale (fp16), None otherwise: what ``autograd.grad`` outputs are divided by."""
        return float(self.scaler.get_scale()) if self.scaler is not None else None

    def state(self, key: str = "scaler") -> dict:
        """Extra checkpoint entries: ``{key: scaler state}`` under fp16, nothing otherwise."""
        return {key: self.scaler.state_dict()} if self.scaler is not None else {}

    def load(self, state: dict, key: str = "scaler") -> None:
        """Restore the scaler from a checkpoint's ``key`` (fp16; a checkpoint without it keeps the fresh scale)."""
        if self.scaler is not None and state.get(key):
            self.scaler.load_state_dict(state[key])


def full_precision(x: torch.Tensor):
    """Autocast off for ``x``'s device type (for code that must stay fp32 inside an autocast region)."""
    return torch.autocast(x.device.type, enabled=False)


def maybe_compile(module: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``module.compile()`` (in place: parameters and state-dict keys unchanged) when ``enabled``."""
    if enabled:
        module.compile()
    return module


def to_device(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``x`` on ``device``; a CPU tensor bound for CUDA goes through pinned memory, asynchronously."""
    device = torch.device(device)
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def digest_fields(doc: dict) -> dict:
    """``doc`` without ``precision: fp32`` and ``compile: false`` (the defaults)."""
    doc = dict(doc)
    if doc.get("precision") == "fp32":
        doc.pop("precision")
    if doc.get("compile") is False:
        doc.pop("compile")
    return doc
