"""DARTS on the head search space (NASiam): alternate architecture and weight steps.

The unlabeled train split is cut in two halves with the seed: weight steps (SGD, the
trainer's schedule) see one, architecture steps (AdamW on the alphas) the other. An
architecture step runs the backbone without gradients: the alphas live in the heads, so
only the heads need a backward pass, which keeps a search epoch near the cost of a
plain SSL epoch.

Second order unrolls the *head* weights one SGD step (``w' = w - xi * grad_w L_train``)
and corrects the architecture gradient with the finite-difference Hessian-vector product
of DARTS (``eps = 0.01 / ||grad_w' L_val||``); the backbone is held fixed within the step.

Under ``run.precision=bf16`` the architecture step runs under the same autocast as the weight step,
except second order's finite difference, which needs fp32 to resolve its small perturbation.

Momentum encoders (MoCo's key encoder, BYOL's target) hold a copy of the searched
heads: their weights follow the EMA, their alphas are copied from the online network
after every step (see :class:`selfnas.ssl.base.MomentumTarget`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.func import functional_call

from selfnas import distributed
from selfnas.config import SearchConfig, TrainConfig
from selfnas.device import Precision, autocast
from selfnas.models.backbones import create_backbone
from selfnas.models.genotype import HeadGenotype, save_genotype
from selfnas.nas.spaces.cells import CellSearchSpace, CellSupernet
from selfnas.nas.spaces.heads import SearchHead, head_spaces
from selfnas.render.plots import plot_alpha_evolution
from selfnas.ssl.base import SSLMethod
from selfnas.training.builder import assemble_method, head_specs
from selfnas.training.memory import available_bytes, check_step_fits, step_bytes
from selfnas.training.trainer import Trainer, stream_seed


class HeadSearchTrainer(Trainer):
    """A :class:`Trainer` whose model has supernet heads and whose steps alternate.

    The DARTS machinery here is shared with :class:`CellSearchTrainer`; a space plugs in
    through :meth:`supernets`, :meth:`genotype` and :meth:`genotype_summary`.
    """

    #: the alphas live in the heads, so the architecture step needs no backbone gradient
    arch_step_freezes_backbone = True

    def __init__(self, config: TrainConfig, *args: Any, **kwargs: Any) -> None:
        if config.search is None:  # the default search settings, recorded in config.yaml
            config = config.model_copy(update={"search": SearchConfig()})
        super().__init__(config, *args, **kwargs)

    def weight_images(self, images: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(stream_seed(self.config.run.seed, 5, 0))
        perm = torch.randperm(len(images), generator=g)
        half = len(images) // 2
        self.arch_images = images[perm[half:]].to(self.device)
        self.arch_perm_epoch = -1
        self.arch_stopped_at: int | None = None
        return images[perm[:half]]

    def build_model(self, in_channels: int) -> SSLMethod:
        cfg, search = self.config, self._search()
        backbone = create_backbone(cfg.model.backbone, in_channels=in_channels, **cfg.model.backbone_kwargs)
        spaces = head_spaces(search, cfg.method.proj_out, backbone.out_dim, cfg.method.spec)
        projector = SearchHead(spaces[0], backbone.out_dim)
        predictor = None if spaces[1] is None else SearchHead(spaces[1], cfg.method.proj_out)
        return assemble_method(cfg, backbone, projector, predictor)

    def _search(self) -> SearchConfig:
        assert self.config.search is not None  # set in __init__
        return self.config.search

    def supernets(self) -> dict[str, torch.nn.Module]:
        """The searched modules by name; each has alphas, ``weights``, ``derive``, ``entropy``
        and ``parameter_free_count``."""
        out: dict[str, torch.nn.Module] = {"projector": self.model.projector}
        if self.model.predictor is not None:
            out["predictor"] = self.model.predictor
        return out

    def arch_parameters(self) -> list[torch.nn.Parameter]:
        """Trainable parameters named ``*alpha`` (a momentum target's copies are frozen)."""
        return [p for n, p in self.model.named_parameters() if n.endswith("alpha") and p.requires_grad]

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        search = self._search()
        arch = torch.optim.AdamW(
            self.arch_parameters(),
            lr=search.arch_lr,
            weight_decay=search.arch_weight_decay,
            betas=(0.5, 0.999),
        )
        return {"weights": self._weight_optimizer(), "arch": arch}

    # -- the architecture step ------------------------------------------------------------

    def _arch_batch(self, step: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if epoch != self.arch_perm_epoch:
            g = torch.Generator().manual_seed(stream_seed(self.config.run.seed, 3, epoch))
            self.arch_perm = torch.randperm(len(self.arch_images), generator=g).to(self.device)
            self.arch_perm_epoch = epoch
        bs = self.config.optim.batch_size
        pos = ((step % self.plan.steps_per_epoch) * bs) % max(1, len(self.arch_images) - bs + 1)
        batch = self.arch_images[self.arch_perm[pos : pos + bs][self.rows]]  # this rank's slice
        g = torch.Generator().manual_seed(stream_seed(self.config.run.seed, 4, step))
        return self.augment(batch, g, part=self.part)

    def _arch_loss(self, loss: torch.Tensor) -> torch.Tensor:
        beta = self._search().beta_decay
        if beta > 0:  # beta-DARTS: keep the logits from running away toward one op
            loss = (
                loss
                + beta
                * torch.stack([torch.logsumexp(a, dim=-1).mean() for a in self.arch_parameters()]).mean()
            )
        return loss

    def before_weight_step(self, step: int, epoch: int) -> None:
        search = self._search()
        if epoch < search.warmup_epochs * 1.0 or self.arch_stopped_at is not None:
            return
        x1, x2 = self._arch_batch(step, epoch)
        arch_opt = self.optimizers["arch"]
        arch_opt.zero_grad(set_to_none=True)
        self.model.freeze_backbone = self.arch_step_freezes_backbone
        try:
            if search.order == 2:
                self._unrolled_arch_grad(step, epoch, x1, x2)
            else:
                with autocast(self.device, self.precision):
                    loss = self._arch_loss(self.model(x1, x2).loss)
                grads = torch.autograd.grad(loss, self.arch_parameters())
                for p, g in zip(self.arch_parameters(), grads, strict=True):
                    p.grad = g
        finally:
            self.model.freeze_backbone = False
        distributed.all_reduce_grads(self.arch_parameters())  # several ranks: the global-batch grad
        arch_opt.step()

    def _unrolled_arch_grad(self, step: int, epoch: int, xv1: torch.Tensor, xv2: torch.Tensor) -> None:
        """DARTS second order on the head weights (see the module docstring)."""
        heads_only = ("projector.", "predictor.") if self.arch_step_freezes_backbone else ("",)
        names = [
            n
            for n, p in self.model.named_parameters()
            if p.requires_grad and not n.endswith("alpha") and n.startswith(heads_only)
        ]
        params = dict(self.model.named_parameters())
        weights = [params[n] for n in names]
        alphas = self.arch_parameters()
        # a training batch for the inner step: the weight half, this step's augmentation
        g = torch.Generator().manual_seed(stream_seed(self.config.run.seed, 6, step))
        idx = torch.randint(0, len(self.images), (self.config.optim.batch_size,), generator=g)[self.rows]
        xt1, xt2 = self.augment(self.images[idx.to(self.device)], g, part=self.part)
        xi = self.optimizer.param_groups[0]["lr"]

        def loss_at(
            ws: list[torch.Tensor], a: torch.Tensor, b: torch.Tensor, precision: Precision = self.precision
        ) -> torch.Tensor:
            with autocast(self.device, precision):
                return functional_call(self.model, dict(zip(names, ws, strict=True)), (a, b)).loss

        # several ranks: average the weight gradients so that the unrolled weights and eps are the
        # global batch's; the alpha gradient is linear in the rest and averaged by the caller
        g_train = distributed.mean(torch.autograd.grad(loss_at(weights, xt1, xt2), weights))
        unrolled = [w.detach() - xi * gw for w, gw in zip(weights, g_train, strict=True)]
        unrolled = [u.requires_grad_(True) for u in unrolled]
        val_loss = self._arch_loss(loss_at(unrolled, xv1, xv2))
        grads = torch.autograd.grad(val_loss, [*alphas, *unrolled])
        d_alpha, d_w = grads[: len(alphas)], distributed.mean(grads[len(alphas) :])
        eps = 0.01 / torch.sqrt(sum((d * d).sum() for d in d_w)).clamp_min(1e-12)
        with torch.no_grad():
            plus = [w + eps * d for w, d in zip(weights, d_w, strict=True)]
            minus = [w - eps * d for w, d in zip(weights, d_w, strict=True)]
        # the finite difference in fp32: bf16's 8-bit mantissa cannot resolve a perturbation of
        # the weights that small (a relative 0.01 / ||grad||), so bf16 would difference noise
        g_plus = torch.autograd.grad(loss_at(plus, xt1, xt2, "fp32"), alphas)
        g_minus = torch.autograd.grad(loss_at(minus, xt1, xt2, "fp32"), alphas)
        for a, da, gp, gm in zip(alphas, d_alpha, g_plus, g_minus, strict=True):
            a.grad = da - xi * (gp - gm) / (2 * eps)

    def extra_state(self) -> dict[str, Any]:
        return {"arch_stopped_at": self.arch_stopped_at}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.arch_stopped_at = state.get("arch_stopped_at")

    # -- records ------------------------------------------------------------------------

    def epoch_record(self, epoch: int) -> dict[str, Any]:
        # every rank applies the same averaged gradients, so the alphas agree; rank 0's are
        # broadcast anyway so that no rounding drift can ever make the ranks decide differently
        distributed.broadcast_tensors(self.arch_parameters())
        search = self._search()
        nets = self.supernets()
        entropy = sum(h.entropy() for h in nets.values()) / len(nets)
        if search.entropy_stop is not None and self.arch_stopped_at is None and entropy < search.entropy_stop:
            self.arch_stopped_at = epoch  # early stop on alpha entropy: freeze the architecture
        return {
            "alphas": {n: _as_lists(h.weights()) for n, h in nets.items()},
            "genotype": self.genotype_summary(),
            "parameter_free": {n: h.parameter_free_count() for n, h in nets.items()},
            "alpha_entropy": entropy,
            "arch_frozen": self.arch_stopped_at is not None or epoch <= search.warmup_epochs,
        }

    def genotype_summary(self) -> dict[str, Any]:
        """The current argmax architecture, as JSON, for the epoch record."""
        cap = self._search().max_parameter_free
        return {n: [layer.op for layer in h.derive(cap).layers] for n, h in self.supernets().items()}

    def progress_info(self) -> dict[str, str]:
        short = {"identity": "id", "max_pool_3": "max", "avg_pool_3": "avg"}
        parts = []
        for name, head in self.supernets().items():
            ops = [
                short.get(layer.op, layer.op.replace("linear_bn_", "")) for layer in head.derive().layers[:-1]
            ]
            parts.append(f"{name[:4]}[{' '.join(ops)}]")
        return {"argmax": " ".join(parts)}

    def genotype(self) -> HeadGenotype:
        cap = self._search().max_parameter_free
        heads = self.supernets()
        predictor = heads["predictor"].derive(cap) if "predictor" in heads else None
        projector = heads["projector"].derive(cap)
        return HeadGenotype(projector, predictor, self.config.method.name, self._search().layout)

    def after_fit(self) -> None:
        self.save_final_genotype()
        if self.main:
            plot_alpha_evolution(self.run)

    def save_final_genotype(self) -> None:
        """Derive the genotype on rank 0, hand it to every rank (``final_genotype``), write it."""
        self.final_genotype = distributed.on_main(self.genotype)
        if self.main:
            save_genotype(self.run.genotype, self.final_genotype)


def _as_lists(weights: torch.Tensor | tuple[torch.Tensor, ...]) -> list:
    """softmax(alpha) as nested lists (a tuple, as for normal + reduction cells, becomes a list)."""
    if isinstance(weights, tuple):
        return [w.detach().cpu().tolist() for w in weights]
    return weights.detach().cpu().tolist()


class CellSearchTrainer(HeadSearchTrainer):
    """DARTS over the DARTS / CSNAS cell space, with any SSL method (the DARTS-with-SimCLR
    setting): the backbone is a :class:`CellSupernet`, the heads are the method's own.
    The alphas live in the backbone, so the architecture step back-propagates through it
    and second order unrolls every weight, as in DARTS."""

    arch_step_freezes_backbone = False

    def __init__(self, config: TrainConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._check_memory()

    def _check_memory(self) -> None:
        """Refuse a supernet whose training step cannot fit in the memory left (one line), before
        the kernel kills the run mid-step (see :mod:`selfnas.training.memory`). One process only:
        with several, the probe's BatchNorm would synchronise across ranks and a refusal read from
        each rank's own memory figure could stop one rank and leave the others waiting."""
        if self.world > 1:
            return
        search, batch = self._search(), self.config.optim.batch_size

        def views(b: int) -> tuple[torch.Tensor, ...]:
            return self.augment(self.images[:b], torch.Generator().manual_seed(0))

        with autocast(self.device, self.precision):
            needed = step_bytes(self.model, views, batch)
        note = check_step_fits(
            f"the cells supernet ({search.cell_layers} cells of width {search.cell_width})",
            needed,
            available_bytes(self.device),
            batch,
            ", search.cell_width or search.cell_layers, or train on a machine with more memory",
        )
        if note:  # logged with the thread count when training starts
            self.threads_note = f"{self.threads_note}\n{note}" if self.threads_note else note

    def build_model(self, in_channels: int) -> SSLMethod:
        cfg, search = self.config, self._search()
        space = CellSearchSpace(nodes=search.nodes, C=search.cell_width, layers=search.cell_layers)
        projector, predictor = head_specs(cfg)
        return assemble_method(cfg, CellSupernet(space, in_channels), projector, predictor)

    def supernets(self) -> dict[str, torch.nn.Module]:
        return {"cells": self.model.backbone}

    def genotype_summary(self) -> dict[str, Any]:
        return self.genotype().to_json()

    def progress_info(self) -> dict[str, str]:
        genotype = self.genotype()
        return {
            "normal": " ".join(op.replace("_conv", "").replace("_connect", "") for op, _ in genotype.normal)
        }

    def genotype(self):  # -> CellGenotype
        return self.model.backbone.derive()

    def after_fit(self) -> None:
        self.save_final_genotype()
