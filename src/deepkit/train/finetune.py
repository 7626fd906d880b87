"""Transfer learning: load pretrained weights into a new model, freeze/unfreeze by parameter-name pattern,
lower learning rates for the backbone, and a callback that keeps the backbone frozen for the first epochs.

A recipe's ``finetune`` section drives it::

    finetune:
      weights: runs/mnist04_pretrain     # run directory, checkpoint, .safetensors or (trusted) torch file
      freeze_backbone_epochs: 2          # train only the new head first, then everything
      backbone_lr_mult: 0.1              # backbone lr = 0.1 × trainer.optimizer.lr once unfrozen

"Backbone" is every parameter outside the model's classifier (``model.get_classifier()``).
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from deepkit.errors import ConfigError
from deepkit.models.registry import load_state_dict_checked
from deepkit.train.callbacks import Callback
from deepkit.weights import load_weights


@dataclass
class FinetuneConfig:
    weights: str | None = None  # pretrained weights: run dir, checkpoint dir, .safetensors, or torch file
    trust_pickle: bool = False  # allow a pickle-based (torch.save) weights file; read with weights_only=True
    reset_head: bool = True  # drop the file's classifier and start a new one for this data's classes
    freeze_backbone_epochs: int = 0  # epochs during which only the head trains (0: never frozen)
    backbone_lr_mult: float = 1.0  # backbone lr multiplier relative to trainer.optimizer.lr
    freeze: list[str] | None = None  # extra parameter-name patterns kept frozen for the whole run, e.g. ["layer1.*"]
    reset: list[str] | None = None  # patterns NOT loaded but trained afresh like the head, e.g. ["fc.*"]: chop off
    #                                 every fully connected layer, keep only the pretrained convolutions


FREEZE_WARN_FRACTION = 0.5  # a backbone frozen for at least this share of the epochs draws a warning


class FinetuneWarning(UserWarning):
    """A fine-tuning setting that is likely to hurt the run (the message says which and why)."""


def head_parameter_names(model: nn.Module) -> list[str]:
    """Names of the classifier's parameters (``model.get_classifier()``), as in ``model.named_parameters()``."""
    get = getattr(model, "get_classifier", None)
    if get is None:
        raise ConfigError(f"model '{getattr(model, 'model_name', type(model).__name__)}' has no get_classifier()")
    head = {id(p) for p in get().parameters()}
    return [n for n, p in model.named_parameters() if id(p) in head]


def head_patterns(model: nn.Module) -> list[str]:
    """fnmatch patterns covering exactly the head: its module prefixes (``fc.*``, ``classifier.6.*``)."""
    prefixes = sorted({n.rsplit(".", 1)[0] for n in head_parameter_names(model)})
    return [f"{p}.*" for p in prefixes]


def matching(model: nn.Module, patterns: list[str]) -> list[str]:
    """Parameter names matching any of ``patterns`` (fnmatch); a pattern that matches nothing is an error."""
    names = [n for n, _ in model.named_parameters()]
    for pat in patterns:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            shown = ", ".join(sorted({n.split(".")[0] + ".*" for n in names})[:10])
            raise ConfigError(f"pattern '{pat}' matches no parameter of the model (top-level names: {shown})")
    return [n for n in names if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]


def set_trainable(model: nn.Module, patterns: list[str], trainable: bool) -> list[str]:
    """Freeze (``trainable=False``) or unfreeze the parameters whose names match ``patterns``; returns them.

    Example:
        >>> set_trainable(model, ["layer1.*", "conv1.*"], False)   # doctest: +SKIP
    """
    names = set(matching(model, patterns))
    for n, p in model.named_parameters():
        if n in names:
            p.requires_grad_(trainable)
    return sorted(names)


def freeze(model: nn.Module, patterns: list[str]) -> list[str]:
    return set_trainable(model, patterns, False)


def unfreeze(model: nn.Module, patterns: list[str]) -> list[str]:
    return set_trainable(model, patterns, True)


def load_pretrained(
    model: nn.Module,
    weights: str | Path,
    reset_head: bool = True,
    trust_pickle: bool = False,
    reset: list[str] | None = None,
) -> dict:
    """Load pretrained weights into ``model``; with ``reset_head`` the file's classifier is ignored, and so are
    the parameters (and their modules' buffers) matching the ``reset`` patterns: they keep their fresh init.

    Every other tensor must fit: missing or unexpected keys and shape mismatches are listed in one error.
    Returns a summary: ``{"loaded": n, "skipped_head": [...]}``.
    """
    state, _ = load_weights(weights, trust_pickle=trust_pickle)
    own = model.state_dict()
    head = set(head_parameter_names(model))
    head_buffers = {k for k in own if k.rsplit(".", 1)[0] in {h.rsplit(".", 1)[0] for h in head}}
    skip = head | head_buffers if reset_head else set()
    if reset:
        prefixes = {n.rsplit(".", 1)[0] for n in matching(model, reset)}
        skip |= {k for k in own if k.rsplit(".", 1)[0] in prefixes}
    prefix = getattr(model, "base_prefix", "")
    if reset_head and prefix:  # Transformers (HF layout): every key outside the backbone is the file's task head
        state = {k: v for k, v in state.items() if k.startswith(prefix + ".")}
    state = {k: v for k, v in state.items() if k not in skip}
    hint = " (same architecture and model settings as the pretrained run expected)"
    load_state_dict_checked(model, state, str(weights), skip=skip, hint=hint)
    return {"loaded": len(state), "skipped_head": sorted(skip)}


def finetune_lr_mult(model: nn.Module, cfg: FinetuneConfig) -> dict[str, float] | None:
    """``trainer.optimizer.lr_mult`` for ``backbone_lr_mult``: the head at 1×, everything else at the multiplier."""
    if cfg.backbone_lr_mult == 1.0:
        return None
    if cfg.backbone_lr_mult <= 0:
        raise ConfigError(f"finetune.backbone_lr_mult must be > 0, got {cfg.backbone_lr_mult}")
    fresh = [*head_patterns(model), *(cfg.reset or [])]
    return {**dict.fromkeys(fresh, 1.0), "*": cfg.backbone_lr_mult}


class BackboneFreezer(Callback):
    """Keeps the backbone frozen (no gradients, batch-norm statistics fixed) for the first ``epochs`` epochs,
    and the parameters matching ``always`` frozen for the whole run. Stateless: it follows the loop's epoch,
    so a resumed run freezes exactly as the original did."""

    def __init__(self, epochs: int = 0, always: list[str] | None = None, fresh: list[str] | None = None):
        self.epochs, self.always, self.fresh = epochs, list(always or []), list(fresh or [])

    def on_fit_start(self, trainer):
        if self.always:
            freeze(trainer.task.model, self.always)

    def on_epoch_start(self, trainer):
        # Freezing per epoch (not at fit start) keeps the Trainer's list of parameters for clipping complete.
        model = getattr(trainer.task.model, "_orig_mod", trainer.task.model)  # under torch.compile
        head = set(head_parameter_names(model)) | (set(matching(model, self.fresh)) if self.fresh else set())
        always = set(matching(model, self.always)) if self.always else set()
        frozen = trainer.state.epoch < self.epochs
        for n, p in model.named_parameters():
            if n not in head:
                p.requires_grad_(not frozen and n not in always)
        if frozen:  # a frozen backbone also keeps its batch-norm running statistics
            fresh_prefixes = {n.rsplit(".", 1)[0] for n in head}
            for name, m in model.named_modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and name not in fresh_prefixes:
                    m.eval()
        if frozen and trainer.state.batch == 0:
            trainer.log(f"finetune: backbone frozen in epoch {trainer.state.epoch + 1} (head only)", echo=False)


def freeze_warning(freeze_epochs: int, epochs: int) -> str | None:
    """The warning for a backbone frozen during most of a run of ``epochs`` epochs, or None."""
    if freeze_epochs <= 0 or epochs <= 0 or freeze_epochs < FREEZE_WARN_FRACTION * epochs:
        return None
    if freeze_epochs >= epochs:
        return (
            f"finetune.freeze_backbone_epochs={freeze_epochs} covers the whole run (trainer.epochs={epochs}): the "
            "pretrained backbone never trains, only the new head; lower freeze_backbone_epochs or raise trainer.epochs"
        )
    return (
        f"finetune.freeze_backbone_epochs={freeze_epochs}: the backbone stays frozen for {freeze_epochs} of "
        f"{epochs} epochs ({100 * freeze_epochs / epochs:.0f}%), and only the new head trains then; with so few "
        "epochs left to fine-tune, the run may end below training from scratch: lower freeze_backbone_epochs "
        "(e.g. 1) or raise trainer.epochs"
    )


def _names(names: list[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f", … ({len(names)} in all)" if len(names) > n else "")


class FinetuneLog(Callback):
    """At fit start: writes what :func:`setup_finetune` did (weights loaded, layers trained afresh) into the run's
    log, and warns when the backbone stays frozen for most of the run (``trainer.epochs`` is known there)."""

    def __init__(self, lines: list[str], freeze_epochs: int = 0):
        self.lines, self.freeze_epochs = list(lines), freeze_epochs

    def on_fit_start(self, trainer):
        for line in self.lines:
            trainer.log(line)
        msg = freeze_warning(self.freeze_epochs, trainer.config.epochs)
        if msg:
            warnings.warn(msg, FinetuneWarning, stacklevel=2)
            trainer.log(f"warning: {msg}", echo=False)  # the console has the warning already


def setup_finetune(ft: FinetuneConfig | None, model: nn.Module, optimizer, load: bool) -> list[Callback]:
    """A recipe's ``finetune`` section: load the pretrained weights (``load``: a new run; a resumed one has its own),
    set the backbone's learning-rate multiplier in ``optimizer`` (the trainer's optimizer section) unless it sets
    one, and return the callbacks: the log of what was loaded (and a warning when the backbone stays frozen for
    most of the run), and the backbone-freezing callback when the section asks for one."""
    if ft is None:
        return []
    lines = []
    if load and ft.weights:
        info = load_pretrained(model, ft.weights, ft.reset_head, ft.trust_pickle, ft.reset)
        line = f"finetune: loaded {info['loaded']} tensors from {ft.weights}"
        if info["skipped_head"]:  # the modules left at their fresh initialization
            fresh = sorted({k.rsplit(".", 1)[0] for k in info["skipped_head"]})
            what = "new head" + (" and finetune.reset" if ft.reset else "")
            line += f"; not loaded, trained afresh ({what}): {_names(fresh)} ({len(info['skipped_head'])} tensors)"
        lines.append(line)
    if ft.freeze:
        lines.append(f"finetune: frozen for the whole run: {', '.join(ft.freeze)}")
    mult = finetune_lr_mult(model, ft)
    if mult and not optimizer.lr_mult:
        optimizer.lr_mult = mult
        if load:
            lines.append(f"finetune: backbone learning rate × {ft.backbone_lr_mult} (the new head × 1)")
    callbacks: list[Callback] = []
    if lines or ft.freeze_backbone_epochs:
        callbacks.append(FinetuneLog(lines, ft.freeze_backbone_epochs))
    if ft.freeze_backbone_epochs or ft.freeze:
        callbacks.append(BackboneFreezer(ft.freeze_backbone_epochs, ft.freeze, ft.reset))
    return callbacks
