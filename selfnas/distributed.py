"""Several processes with torchrun: one process per GPU (or per CPU group), one global batch.

``torchrun --nproc_per_node N -m selfnas.cli train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init` then joins the process group. Tensors on CUDA travel by NCCL, tensors
on the CPU (``run.device=cpu``) by gloo: the group is created as ``cpu:gloo,cuda:nccl`` when every
local rank has a GPU, else as plain gloo. Without torchrun (or with one process) every helper here
is a no-op, so the single-process path stays bit-identical.

How N processes reproduce one process (see :class:`selfnas.training.trainer.Trainer`):

- every rank draws the same data order and augmentation randomness for the whole *global* batch
  (``optim.batch_size``) and keeps its contiguous slice of it;
- BatchNorm layers become :class:`SyncBatchNorm`: the statistics are those of the global batch
  (torch's own on CUDA; on the CPU, where torch refuses, a small differentiable all-reduce version);
- the loss of a rank is a mean over its slice, so the average of the ranks' gradients
  (:func:`all_reduce_grads`) is the gradient of the global-batch loss. Losses that compare samples
  with each other gather them first (:func:`gather_with_grad` for SimCLR's negatives,
  :func:`gather` for MoCo's queue);
- only rank 0 writes files; every rank can resume from the run's checkpoint.

The gradients are averaged by one flat all-reduce after the backward pass rather than by a
``DistributedDataParallel`` wrapper: it works unchanged with the methods' forwards (which call the
backbone and heads separately, and for a search only the heads), and covers the architecture
alphas as well. It does not overlap communication with the backward pass as DDP's buckets do.
"""

from __future__ import annotations

import atexit
import os
import pickle
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from selfnas.errors import ConfigError

T = TypeVar("T")


# -- who am I ------------------------------------------------------------------------------


def launched() -> bool:
    """True when started by torchrun (or any launcher setting the env) with more than one process."""
    return _env("WORLD_SIZE", 1) > 1


def world() -> int:
    """Number of processes (1 without torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else _env("WORLD_SIZE", 1)


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else _env("RANK", 0)


def local_rank() -> int:
    return _env("LOCAL_RANK", 0)


def is_main() -> bool:
    """True on the process that writes files (rank 0)."""
    return rank() == 0


def active() -> bool:
    """True when a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise ConfigError(f"environment variable {name}={os.environ[name]!r} is not an integer") from None


# -- setup / teardown ----------------------------------------------------------------------


def _gpu_per_rank() -> bool:
    return (
        torch.cuda.is_available()
        and dist.is_nccl_available()
        and _env("LOCAL_WORLD_SIZE", 1) <= torch.cuda.device_count()
        and local_rank() < torch.cuda.device_count()
    )


def init() -> None:
    """Join the process group once if launched by torchrun; otherwise do nothing."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run a single process")
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        if name not in os.environ:
            raise ConfigError(f"WORLD_SIZE is set but {name} is not; launch with torchrun --nproc_per_node N")
    if _gpu_per_rank():
        torch.cuda.set_device(local_rank())
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    atexit.register(cleanup)


def cleanup() -> None:
    """Leave the process group (idempotent)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def cuda_device() -> torch.device:
    """The GPU of this rank: ``cuda:LOCAL_RANK`` (a one-line error when there are too few GPUs)."""
    lr, n = local_rank(), torch.cuda.device_count()
    if lr >= n:
        raise ConfigError(
            f"torchrun started local rank {lr} but only {n} GPU(s) are visible; "
            f"use --nproc_per_node {max(n, 1)} or --set run.device=cpu"
        )
    return torch.device("cuda", lr)


def barrier() -> None:
    if active():
        dist.barrier()


# -- objects -------------------------------------------------------------------------------


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` of rank ``src`` on every rank (pickled)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result to every rank. An exception raised there is
    raised on every rank (so no rank waits forever for one that failed)."""
    if not active():
        return fn()
    outcome: tuple[str, Any] = ("ok", None)
    if is_main():
        try:
            outcome = ("ok", fn())
        except Exception as exc:
            try:
                pickle.dumps(exc)
                outcome = ("error", exc)
            except Exception:
                outcome = ("error", RuntimeError(str(exc)))
    kind, value = broadcast_object(outcome)
    if kind == "error":
        if is_main():
            raise value from None
        raise value
    return value


# -- tensors -------------------------------------------------------------------------------


def _flat_all_reduce(tensors: Sequence[torch.Tensor], average: bool) -> list[torch.Tensor]:
    """All-reduce (sum, or mean) of many tensors in one collective per dtype and device."""
    out = list(tensors)
    buckets: dict[tuple[torch.dtype, torch.device], list[int]] = {}
    for i, t in enumerate(tensors):
        buckets.setdefault((t.dtype, t.device), []).append(i)
    for indices in buckets.values():
        flat = torch.cat([tensors[i].reshape(-1) for i in indices])
        dist.all_reduce(flat)
        if average:
            flat.div_(world())
        pos = 0
        for i in indices:
            n = tensors[i].numel()
            out[i] = flat[pos : pos + n].view(tensors[i].shape)
            pos += n
    return out


def all_reduce_grads(params: Iterable[torch.Tensor]) -> None:
    """Average ``p.grad`` over the ranks, in place, for every param that has one (weights and
    architecture alphas alike). The graphs are the same on every rank, so are the grads present."""
    if not active():
        return
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return
    averaged = _flat_all_reduce([p.grad for p in with_grad], average=True)
    for p, g in zip(with_grad, averaged, strict=True):
        p.grad.copy_(g)


def mean(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The ranks' average of each tensor (new tensors; the inputs are left alone)."""
    if not active():
        return list(tensors)
    return _flat_all_reduce([t.detach() for t in tensors], average=True)


def gather(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` (N x ...) of every rank along dim 0, in rank order; no gradient."""
    if not active():
        return t
    t = t.detach().contiguous()
    parts = [torch.empty_like(t) for _ in range(world())]
    dist.all_gather(parts, t)
    return torch.cat(parts)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums the gradients that every rank computed for each part and
    returns this rank's part (SimCLR's GatherLayer; one all-reduce, so it works on any backend)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.n, ctx.rank = t.shape[0], rank()
        t = t.contiguous()
        parts = [torch.empty_like(t) for _ in range(world())]
        dist.all_gather(parts, t)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Differentiable :func:`gather`: every rank sees the global batch, gradients reach their owner.

    When every rank computes the same loss of the gathered tensor, a part's gradient arrives ``world``
    times (once per rank); the averaging of :func:`all_reduce_grads` divides it back, so the weights
    get exactly the gradient of the single-process loss."""
    if not active():
        return t
    return _GatherWithGrad.apply(t)


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce (sum): the backward sums the upstream gradients of all ranks, the
    gradient of the ranks' summed loss with respect to this rank's input."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        t = t.contiguous().clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


# -- modules -------------------------------------------------------------------------------


class SyncBatchNorm(nn.SyncBatchNorm):
    """torch's SyncBatchNorm, plus the CPU path torch refuses (``expected input tensor to be on GPU``).

    On the CPU in training mode with several ranks, the per-channel sum and count, then the sum of
    squared deviations, are all-reduced with gradient (two passes, as numerically sound as one-process
    BatchNorm); normalisation and the running-statistics update (unbiased variance) follow
    ``F.batch_norm``. Elsewhere (CUDA, eval mode, one rank) torch's implementation runs.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and input.device.type == "cpu" and active()):
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            assert self.num_batches_tracked is not None
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        c = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, c] + [1] * (input.dim() - 2)
        x = input if input.dtype in (torch.float32, torch.float64) else input.float()
        count = torch.full((1,), input.numel() // c, dtype=x.dtype)
        stats = _AllReduceSum.apply(torch.cat([x.sum(dims), count]))
        n = stats[c]
        mu = stats[:c] / n
        xc = x - mu.view(shape)
        var = _AllReduceSum.apply((xc * xc).sum(dims)) / n  # biased: what normalises
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.running_mean.mul_(1 - factor).add_(mu.detach(), alpha=factor)
                unbiased = var.detach() * (n / (n - 1).clamp_min(1))
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def prepare_model(model: nn.Module) -> nn.Module:
    """For several ranks: BatchNorm -> :class:`SyncBatchNorm`, then rank 0's parameters and buffers
    on every rank. One rank: ``model`` unchanged."""
    if not active():
        return model
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if type(module) is nn.SyncBatchNorm:
            module.__class__ = SyncBatchNorm  # same state; adds the CPU path
    broadcast_tensors([*model.parameters(), *model.buffers()])
    return model


def broadcast_tensors(tensors: Iterable[torch.Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` in place with rank ``src``'s values."""
    if not active():
        return
    with torch.no_grad():
        for t in tensors:
            if t.is_contiguous():
                dist.broadcast(t.data, src=src)
            else:  # channels_last weights: broadcast a contiguous copy
                tmp = t.detach().contiguous()
                dist.broadcast(tmp, src=src)
                t.copy_(tmp)


def check_batch(batch_size: int) -> int:
    """This rank's share of the global ``batch_size`` (a one-line error if it does not divide)."""
    n = world()
    if batch_size % n:
        raise ConfigError(
            f"optim.batch_size {batch_size} is the global batch and must divide by the {n} processes; "
            f"use a multiple of {n}"
        )
    return batch_size // n
