"""Which parameters train: LoRA on the language model, then frozen/trainable module-name prefixes."""

from __future__ import annotations

import re

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer

from momentseg.errors import InputError
from momentseg.train.config import ModelConfig


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def lora_pattern(target_modules: list[str], under: list[str]) -> str:
    """peft ``target_modules`` regex: modules under one of ``under`` whose last name is a target."""
    roots = "|".join(re.escape(u) for u in under)
    leaves = "|".join(re.escape(t) for t in target_modules)
    return rf"(?:{roots})\..*\b(?:{leaves})"


def apply_trainable(model: torch.nn.Module, cfg: ModelConfig) -> dict[str, int]:
    """Set ``requires_grad`` per ``cfg`` (in place) and return counts ``{"trainable": n, "total": n}``.

    Without LoRA everything trains (full fine-tuning). With ``cfg.lora`` peft LoRA layers (r, α, dropout) are
    injected into the matching Linear layers and only their adapters train. Then ``cfg.frozen`` prefixes are
    switched off and ``cfg.trainable`` prefixes on (e.g. embeddings, lm_head, the SAM2 mask decoder, heads).
    A prefix or LoRA pattern that matches nothing is an InputError (most likely a typo).
    """
    if cfg.lora is not None:
        pattern = lora_pattern(cfg.lora.target_modules, cfg.lora.under)
        if not any(re.fullmatch(pattern, n) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)):
            raise InputError(f"model.lora matches no Linear layer (targets {cfg.lora.target_modules} under "
                             f"{cfg.lora.under})")
        config = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                            target_modules=pattern, bias="none")
        inject_adapter_in_model(config, model)
        for name, p in model.named_parameters():
            p.requires_grad_(".lora_" in name)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    names = [n for n, _ in model.named_parameters()]
    for key, prefixes, flag in (("model.frozen", cfg.frozen, False), ("model.trainable", cfg.trainable, True)):
        for prefix in prefixes:
            hits = [p for n, p in model.named_parameters() if _matches(n, prefix)]
            if not hits:
                near = sorted({n.split(".")[0] for n in names})
                raise InputError(f"{key}: prefix '{prefix}' matches no parameter (top-level modules: {near})")
            for p in hits:
                p.requires_grad_(flag)
    counts = {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "total": sum(p.numel() for p in model.parameters())}
    if counts["trainable"] == 0:
        raise InputError("model: no parameter is left to train (check model.frozen / model.lora)")
    return counts


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every LoRA adapter into its base layer and put the plain layer back (in place); returns ``model``
    with the parameter names it had before LoRA."""
    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    return model


def _checkpoint(module: torch.nn.Module) -> None:
    options = {"use_reentrant": False}  # works with frozen inputs (LoRA) and DDP's unused-parameter search
    if hasattr(module, "activation_checkpointing_enable"):  # transformers ≥ 5 name
        module.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)


def enable_gradient_checkpointing(model: torch.nn.Module) -> list[str]:
    """Turn on (non-reentrant) activation checkpointing in ``model`` if it is a transformers model that
    supports it, else in every direct child that is (Qwen2.5-VL, SAM2); returns the names switched on."""
    if getattr(model, "supports_gradient_checkpointing", False):
        _checkpoint(model)
        return [""]
    names = []
    for name, child in model.named_children():
        if getattr(child, "supports_gradient_checkpointing", False):
            _checkpoint(child)
            names.append(name)
    if not names:
        raise InputError(f"model.gradient_checkpointing: {type(model).__name__} has no part that supports it")
    return names
