"""Data-parallel training with ``torch.distributed``: the pieces every family's loop uses.

A run is distributed when ``torchrun`` (``torch.distributed.run``) started it with a world of more
than one process: the ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``
variables it sets are read by ``setup``, which joins the process group (NCCL when the run trains on
CUDA, gloo on the CPU). Without them (or with a world of one) nothing here does anything and the
single-process path is the one it has always been, to the last bit.

- ``setup(device)``: join the group once per process; returns the ``Context`` (rank, world size,
  the device of this rank: ``cuda:LOCAL_RANK`` when CUDA was asked). ``current()`` gives it later.
- ``Context.shard(rows)``: the rows of a global batch this rank trains on (``rows[rank::world]``), so
  that W processes together see exactly the global batch one process would.
- ``Context.wrap(module)``: ``DistributedDataParallel`` around a module (gradients averaged over
  the ranks during ``backward``); ``sync_batch_norm(module)`` first makes its BatchNorm layers take
  their statistics over the global batch (``torch.nn.SyncBatchNorm`` is CUDA-only; this one runs on
  gloo too, through an all-reduce that autograd differentiates).
- ``Context.all_sum(values)``: float64 sums over the ranks (token counts, logged losses).
- ``Context.is_main`` (rank 0 writes checkpoints, metrics and figures), ``barrier()``, ``close()``.
- ``Context.collective(what)``: a lost rank (killed process, broken connection) surfaces inside a
  collective as a backend error; this turns it into one ``StageError`` line that says to rerun.
- ``launch(nproc, argv)``: ``pipeline train ... --nproc N`` re-runs the same command under
  ``torch.distributed.run`` with N processes on this machine; a failed worker is one line.

Checkpoints hold the unwrapped module's state dict, so a run resumes on any world size.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

_CONTEXT: "Context | None" = None

#: the variables torchrun sets in every worker
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"
    _wrapped: list = field(default_factory=list, repr=False)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- data ----------------------------------------------------------------------------------
    def shard(self, rows):
        """This rank's rows of a global batch (indices, a tensor or an array): ``rows[rank::world]``."""
        return rows[self.rank::self.world] if self.active else rows

    # -- collectives ---------------------------------------------------------------------------
    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Sums over the ranks (float64; the values themselves where not distributed)."""
        if not self.active:
            return [float(v) for v in values]
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        if self.backend == "nccl":
            t = t.to(self.device)
        with self.collective("summing metrics"):
            dist.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            with self.collective("waiting for the other ranks"):
                if self.backend == "nccl":
                    dist.barrier(device_ids=[self.local_rank])
                else:
                    dist.barrier()

    @contextlib.contextmanager
    def collective(self, what: str) -> Iterator[None]:
        """Backend errors inside the block (a peer died, a connection closed, a timeout) become
        one line: which rank saw it, and that a rerun resumes from the last checkpoint."""
        if not self.active:
            yield
            return
        from pipeline.errors import StageError

        try:
            yield
        except (RuntimeError, OSError) as exc:  # torch.distributed.DistError is a RuntimeError
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise StageError(f"distributed training stopped: rank {self.rank} of {self.world} lost its peers while "
                             f"{what} ({first}); rerun the same command to resume from the last checkpoint") from None

    # -- modules -------------------------------------------------------------------------------
    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``DistributedDataParallel(module)`` where distributed (the module itself otherwise)."""
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ctx = self

        class _DDP(DistributedDataParallel):
            """DDP whose forward (it syncs buffers and rebuilds buckets with the peers) turns a lost
            peer into the same one line as the backward's all-reduce."""

            def forward(self, *args, **kwargs):
                with ctx.collective("a forward pass"):
                    return super().forward(*args, **kwargs)

        ids = [self.local_rank] if self.backend == "nccl" else None
        with self.collective("wrapping the model"):
            return _DDP(module, device_ids=ids)

    def close(self) -> None:
        global _CONTEXT
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
        _CONTEXT = None


def env_world() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup(device: str = "cpu") -> Context:
    """Join the process group when torchrun started this process with more than one worker (once
    per process); the single-process ``Context`` otherwise. ``device``: what the run asked for;
    under CUDA each rank gets ``cuda:LOCAL_RANK`` and NCCL, on the CPU gloo."""
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    world = env_world()
    if world <= 1:
        return Context(device=device)
    import torch.distributed as dist

    from pipeline.errors import ParamsError

    missing = [k for k in ENV_KEYS if k not in os.environ]
    if missing:
        raise ParamsError(f"WORLD_SIZE={world} but {', '.join(missing)} unset: start distributed runs with torchrun "
                          "(or pipeline train ... --nproc N)")
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    cuda = device.startswith("cuda")
    if cuda:
        if not torch.cuda.is_available():
            raise ParamsError(f"device={device!r}: no CUDA device is available on this machine")
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    backend = "nccl" if cuda else "gloo"
    ctx = Context(rank=rank, world=world, local_rank=local, backend=backend, device=device)
    with ctx.collective("joining the process group"):
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=float(os.environ.get("PIPELINE_DIST_TIMEOUT", 600))))
    _CONTEXT = ctx
    import atexit

    atexit.register(ctx.close)  # a clean destroy_process_group when the command ends
    return ctx


def current() -> Context:
    """The context ``setup`` made (a single-process one where it was not called)."""
    return _CONTEXT if _CONTEXT is not None else Context()


# ---------------------------------------------------------------------------------------------
# BatchNorm over the global batch


from torch.nn.modules.batchnorm import _BatchNorm


class _AllSum(torch.autograd.Function):
    """A sum over the ranks that autograd goes through: the gradient of every rank's input is the
    sum over the ranks of the gradients of the output (each rank's loss depends on every input)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        g = grad.clone()
        dist.all_reduce(g)
        return g


class _GlobalBatchNorm(_BatchNorm):
    """Mixed in after a BatchNorm class (``sync_batch_norm``): in training, mean and variance over the
    rows of every rank (sums all-reduced, differentiably, so gradients flow through the statistics
    as in one process); running statistics updated with the global values. Eval mode, or a
    single process, is plain BatchNorm. It sits after the layer's own class in the MRO, so a
    subclass that reshapes before ``super().forward`` (``models.musegan.Norm``) still does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        if not (self.training and current().active):
            return super().forward(x)
        c = x.shape[1]
        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, c] + [1] * (x.dim() - 2)
        with current().collective("synchronising BatchNorm"):
            # two passes, as torch's own BatchNorm: the mean, then the mean squared deviation from it
            # (E[x^2] - E[x]^2 cancels badly on channels of nearly constant input)
            first = _AllSum.apply(torch.cat([x.sum(dims), x.new_full((1,), float(x.numel() // c))]))
            n = first[-1]
            mean = first[:c] / n
            var = _AllSum.apply(((x - mean.reshape(shape)) ** 2).sum(dims)) / n
        y = (x - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * unbiased)
        return y


def sync_batch_norm(module: torch.nn.Module) -> torch.nn.Module:
    """Make every BatchNorm layer of ``module`` (subclasses included) take its training statistics
    over the global batch when distributed; in place, and a no-op for a single process. The state
    dict keys stay the same, so checkpoints load either way."""
    if not current().active:
        return module
    for m in module.modules():
        if isinstance(m, _BatchNorm) and not isinstance(m, _GlobalBatchNorm):
            m.__class__ = type(f"Global{type(m).__name__}", (type(m), _GlobalBatchNorm), {})
    return module


# ---------------------------------------------------------------------------------------------
# launching


def launch(nproc: int, argv: Sequence[str]) -> None:
    """Run ``python -m pipeline <argv>`` under ``torch.distributed.run`` with ``nproc`` workers on
    this machine (a free loopback port for the rendezvous). A worker that fails or is killed stops
    the others; that is one ``StageError`` line, naming the rank and its exit."""
    import logging
    import socket

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from pipeline.errors import StageError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = get_args_parser().parse_args(["--nnodes", "1", "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
                                         "--master-port", str(port), "--module", "pipeline", *argv])
    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        run(args)
    except ChildFailedError as exc:
        # the rank that failed first, not one the agent then stopped with SIGTERM
        failures = sorted(exc.failures.items(), key=lambda kv: (kv[1].signal_name() == "SIGTERM", kv[1].timestamp, kv[0]))
        rank, failure = failures[0]
        how = (f"killed by {failure.signal_name()}" if failure.signal_name() not in ("", "N/A", "<N/A>", None)
               else f"exit code {failure.exitcode}")
        raise StageError(f"distributed training stopped: rank {rank} of {nproc} failed ({how}); "
                         "rerun the same command to resume from the last checkpoint") from None
