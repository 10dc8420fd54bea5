"""Fused trial arrays: k trials of one architecture trained as one model on one device.

Trials that differ only in seed, peak lr and weight decay (`array_key`) can train
together. `torch.func` stacks the members' parameters and buffers along a new leading
dimension and `vmap`s `functional_call` over them: convolutions run as grouped
convolutions, linear layers as batched matmuls, and BatchNorm keeps each member's
statistics (its buffers are stacked too). One step launches the kernels of one model for
all k members, which is what a launch-bound small network on a GPU needs (HFTA, Wang et
al., MLSys 2021).

Each member keeps everything that makes it its trial: its initial weights (built from its
seed exactly as a separate trial builds them), its data order and augmentation draws (its
own `data.TensorLoader`), its loss, its optimizer state (slices of the stacked state),
its peak lr and weight decay. The update rules are torch.optim's SGD and AdamW, written
over the stacked tensors with a per-member lr and weight decay. A member's checkpoint is a
separate trial's checkpoint (`Member.shadow` is that trial's model and optimizer), so a
trial can stop being fused, or start, at any epoch.

What is not fused (such trials run as separate trials; `why_not_fused` says which rule):
- trials with more than one worker (an array is one device);
- models that draw random numbers in their forward pass (dropout, DropPath) and the
  `mixup_cutmix` augmentation: a member's draws could not be the separate trial's draws;
- fp16 autocast (one loss scaler would skip every member's step when one overflows);
- the `torchvision` pipeline (per-sample loaders; the tensor pipeline is the default);
- trials that differ in anything else (momentum, betas, schedule, budget, data, ...).
"""
from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.func import functional_call, stack_module_state, vmap

from models import create_model
from raysweep.training import data
from raysweep.core.trial import EpochResult, Segment, TrainConfig, TrialSpec, finite, identity_key
from raysweep.training.worker import (Optimisation, amp_dtype, autocast, build, lr_factor,
                             optimizer_fingerprint, seed_all)

def array_key(spec: TrialSpec) -> str:
    """Trials with equal array keys may train as one fused array."""
    train = {k: v for k, v in spec.train.identity().items() if k not in TrainConfig.ARRAY_FREE}
    return identity_key(spec.model, {"model": spec.model, "options": spec.model_options,
                                     "train": train})


def why_not_fused(spec: TrialSpec, workers: int, classes: int) -> str | None:
    """None if the trial can be a member of a fused array, else the rule it breaks."""
    t = spec.train
    if workers != 1:
        return f"{workers} workers per trial (an array is one device)"
    if t.augment == "mixup_cutmix":
        return "augment mixup_cutmix draws from the model's random stream"
    if t.amp == "fp16":
        return "amp fp16 (one loss scaler for all members)"
    if t.pipeline != "tensor":
        return f"pipeline {t.pipeline} (arrays use the tensor pipeline)"
    return _model_problem(spec.model, tuple(sorted(spec.model_options.items())), classes)


@functools.lru_cache(maxsize=None)
def _model_problem(model: str, options: tuple, classes: int) -> str | None:
    """Whether two copies of the model train under vmap without random draws: a model
    with dropout or DropPath, or an op without a batching rule, fails here."""
    nets = [create_model(model, num_classes=classes, **dict(options)) for _ in range(2)]
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta").train()
    try:
        out = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), randomness="error")(
            params, buffers, torch.randn(2, 2, 3, 32, 32))
        out.sum().backward()
    except Exception as exc:  # noqa: BLE001 - any failure means: train it separately
        return f"model {model} cannot be vmapped ({type(exc).__name__}: {str(exc)[:80]})"
    return None


@dataclass
class Member:
    """One trial of an array: its spec, and its state as a separate trial would hold it
    (what its checkpoints save), in sync with the array after every epoch."""
    spec: TrialSpec
    shadow: Optimisation
    history: list[EpochResult]
    segments: list[Segment]
    skipped: list[str] = field(default_factory=list)   # damaged checkpoints passed over

    @property
    def key(self) -> str:
        return self.spec.key


def new_shadow(spec: TrialSpec, classes: int, steps: int) -> Optimisation:
    """The trial's model and optimizer as a separate one-worker trial builds them (same
    seed, same initial weights), on the CPU."""
    seed_all(spec.seed)
    return build(spec, spec.train, classes, steps, torch.device("cpu"), 1)


class FusedOptimizer:
    """torch.optim's SGD (momentum, L2 weight decay) and AdamW (decoupled weight decay)
    over stacked parameters, with a peak lr and weight decay per member (dimension 0)."""

    def __init__(self, params: list[torch.Tensor], t: TrainConfig, peak_lr: list[float],
                 weight_decay: list[float], state: list[dict], steps_done: int):
        self.params, self.t, self.steps_done = params, t, steps_done
        # Per-member scalars are computed in float64, as torch.optim computes its Python
        # floats, and rounded to the parameters' dtype where they meet a tensor.
        device = params[0].device
        self.peak_lr = torch.tensor(peak_lr, dtype=torch.float64, device=device)
        self.weight_decay = torch.tensor(weight_decay, dtype=torch.float64, device=device)
        self.state = state   # per parameter: momentum_buffer | exp_avg, exp_avg_sq

    @staticmethod
    def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, factor: float) -> None:
        """One optimizer step at lr = peak lr × `factor` (the schedule's multiplier)."""
        self.steps_done += 1
        lr = self.peak_lr * factor
        for p, st in zip(self.params, self.state):
            if self.t.optimizer == "sgd":
                self._sgd(p, p.grad, st, lr)
            else:
                self._adamw(p, p.grad, st, lr)

    def _sgd(self, p, grad, st, lr) -> None:
        grad = grad + self._per_member(self.weight_decay, p) * p
        if self.t.momentum:
            if st.get("momentum_buffer") is None:
                st["momentum_buffer"] = grad.clone()
            else:
                st["momentum_buffer"].mul_(self.t.momentum).add_(grad)
            grad = st["momentum_buffer"]
        p.sub_(self._per_member(lr, p) * grad)

    def _adamw(self, p, grad, st, lr) -> None:
        beta1, beta2 = self.t.betas
        if "exp_avg" not in st:
            st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
        p.mul_(self._per_member(1 - lr * self.weight_decay, p))
        st["exp_avg"].lerp_(grad, 1 - beta1)
        st["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = self._per_member(lr / (1 - beta1 ** self.steps_done), p)
        denom = (st["exp_avg_sq"].sqrt() / (1 - beta2 ** self.steps_done) ** 0.5).add_(EPS)
        p.sub_(step_size * (st["exp_avg"] / denom))

    def member_state(self, i: int, params: list[torch.Tensor]) -> dict:
        """Member i's optimizer state in torch.optim's form, keyed by its own parameters."""
        out = {}
        for p, st in zip(params, self.state):
            tensors = {k: v[i].detach().cpu().clone() for k, v in st.items() if v is not None}
            if self.t.optimizer == "adamw" and tensors:
                tensors["step"] = torch.tensor(float(self.steps_done))
            if tensors:
                out[p] = tensors
        return out


EPS = 1e-8   # AdamW's eps: torch.optim's default, which `worker.make_optimizer` keeps


class FusedTrainer:
    """The members' stacked state on one device, trained and evaluated epoch by epoch."""

    def __init__(self, members: list[Member], splits: data.Splits, steps: int, device,
                 compile_mode: str = "off"):
        self.splits, self.steps, self.device = splits, steps, device
        self.t = members[0].spec.train
        self.amp = amp_dtype(self.t.amp, device)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.t.label_smoothing)
        self.compile_mode = compile_mode
        self.pad_eval = compile_mode in data.GRAPH_MODES   # one shape for every batch
        self.factor = lr_factor(self.t, steps)
        self.fuse(members)

    def fuse(self, members: list[Member]) -> None:
        """Stack these members' shadows (their state as separate trials) into the array."""
        self.members = list(members)
        models = [m.shadow.model for m in members]
        params, buffers = stack_module_state(models)
        self.params = {n: p.detach().to(self.device).requires_grad_() for n, p in params.items()}
        self.buffers = {n: b.to(self.device) for n, b in buffers.items()}
        self.base = copy.deepcopy(models[0]).to("meta")
        shadows = [list(m.shadow.model.parameters()) for m in members]
        state = []
        for j in range(len(self.params)):
            per = [m.shadow.optimizer.state.get(ps[j], {}) for m, ps in zip(members, shadows)]
            state.append({k: torch.stack([s[k] for s in per]).to(self.device)
                          for k in per[0] if k != "step"})
        self.optimizer = FusedOptimizer(
            list(self.params.values()), self.t, [m.spec.train.peak_lr for m in members],
            [m.spec.train.weight_decay for m in members], state,
            members[0].shadow.scheduler.last_epoch)
        train_losses = vmap(self._loss, randomness="error")
        eval_logits = vmap(self._logits, in_dims=(0, 0, None), randomness="error")
        if self.compile_mode != "off":
            train_losses = torch.compile(train_losses, mode=self.compile_mode)
            eval_logits = torch.compile(eval_logits, mode=self.compile_mode)
        self.train_losses, self.eval_logits = train_losses, eval_logits

    def _loss(self, params, buffers, images, labels):
        return self.criterion(functional_call(self.base, (params, buffers), (images,)), labels)

    def _logits(self, params, buffers, images):
        return functional_call(self.base, (params, buffers), (images,))

    def drop(self, keys: set[str]) -> None:
        """Take these members out of the array (stopped or diverged): the rest re-stack."""
        self.sync_shadows()
        rest = [m for m in self.members if m.key not in keys]
        if rest and len(rest) < len(self.members):
            self.fuse(rest)
        self.members = rest

    @torch.no_grad()
    def sync_shadows(self) -> None:
        """Copy each member's slice of the array into its shadow (what a checkpoint saves)."""
        steps_done = self.optimizer.steps_done
        for i, m in enumerate(self.members):
            model = m.shadow.model
            for name, tensor in (*model.named_parameters(), *model.named_buffers()):
                source = self.params[name] if name in self.params else self.buffers[name]
                tensor.copy_(source[i])
            params = list(model.parameters())
            m.shadow.optimizer.state.clear()
            m.shadow.optimizer.state.update(self.optimizer.member_state(i, params))
            lr = m.spec.train.peak_lr * self.factor(steps_done)
            for group in m.shadow.optimizer.param_groups:
                group["lr"] = lr
            m.shadow.scheduler.load_state_dict({
                **m.shadow.scheduler.state_dict(), "last_epoch": steps_done,
                "_step_count": steps_done + 1, "_last_lr": [lr]})

    def epoch(self, epoch: int) -> list[EpochResult]:
        """Train every member one epoch and evaluate it; the shadows are in sync after."""
        begin = time.perf_counter()
        losses = self.train_epoch(epoch)
        train_seconds = time.perf_counter() - begin
        val = self.evaluate(self.splits.val) if self.splits.val is not None else None
        test = self.evaluate(self.splits.test)
        self.sync_shadows()
        seconds, images = time.perf_counter() - begin, self.steps * self.t.batch_size
        out = []
        for i, m in enumerate(self.members):
            v = val[i] if val else (None, None, None)
            out.append(EpochResult(
                epoch=epoch, train_loss=finite(losses[i]), val_loss=finite(v[0]),
                val_top1=v[1], val_top5=v[2], test_loss=finite(test[i][0]),
                test_top1=test[i][1], test_top5=test[i][2],
                lr=m.shadow.optimizer.param_groups[0]["lr"], epoch_seconds=seconds,
                images_per_s=images / train_seconds, segment=len(m.segments) - 1,
                optimizer_fingerprint=finite(optimizer_fingerprint(m.shadow.optimizer))))
        return out

    def train_epoch(self, epoch: int) -> list[float]:
        """Each member's mean training loss per image over the epoch."""
        self.base.train()
        t, n = self.t, len(self.splits.train)
        loaders = []
        for m in self.members:
            seed = m.spec.seed
            order = data.epoch_order(n, seed, epoch)[:self.steps * t.batch_size]
            loaders.append(data.train_batches(self.splits.train, order, t.batch_size, 0, 1,
                                              seed * 100_003 + epoch, 0))
        params = list(self.params.values())
        sums = torch.zeros(len(self.members), dtype=torch.float64, device=self.device)
        for batches in zip(*loaders):
            images = torch.stack([b[0] for b in batches]).to(self.device, non_blocking=True)
            labels = torch.stack([b[1] for b in batches]).to(self.device, non_blocking=True)
            with autocast(self.device, self.amp):
                losses = self.train_losses(self.params, self.buffers, images, labels)
            for p in params:
                p.grad = None
            losses.sum().backward()
            self.optimizer.step(self.factor(self.optimizer.steps_done))
            sums += losses.detach().double() * labels.shape[1]
        return (sums / (self.steps * t.batch_size)).tolist()

    @torch.no_grad()
    def evaluate(self, split) -> list[tuple[float, float, float]]:
        """Per member: (loss, top-1 %, top-5 %) over the whole split."""
        self.base.eval()
        k = len(self.members)
        sums = torch.zeros(k, 3, dtype=torch.float64, device=self.device)
        top = min(5, self.splits.classes)
        for images, labels in data.eval_batches(split, 0, 1, 0):
            images, labels = images.to(self.device), labels.to(self.device)
            n = len(labels)
            if self.pad_eval:
                images = data.padded(images, data.EVAL_BATCH)
            with autocast(self.device, self.amp):
                logits = self.eval_logits(self.params, self.buffers, images)[:, :n].float()
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.repeat(k),
                                               reduction="none").view(k, -1)
            hits = logits.topk(top, dim=2).indices.eq(labels[None, :, None])
            sums += torch.stack([loss.sum(1).double(), hits[..., 0].sum(1).double(),
                                 hits.any(dim=2).sum(1).double()], dim=1)
        n = len(split)
        return [(s[0] / n, 100 * s[1] / n, 100 * s[2] / n) for s in sums.tolist()]
