"""The user's names for tensors, nodes and modules, read from the frame that
called backward: its local and global variables, and the parameters and
submodules of every nn.Module found there (``model.lin.weight``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import torch

from ..notation import LABEL_WIDTH, numbered, shorten


@dataclass
class Names:
    tensors: Dict[int, str] = field(default_factory=dict)  # id(tensor) → name
    nodes: Dict[int, str] = field(default_factory=dict)  # id(grad_fn) → name
    modules: Dict[int, str] = field(default_factory=dict)  # id(module) → qualified name
    hooked: Dict[int, list] = field(default_factory=dict)  # id(grad_fn) → tensors with the user's hooks
    _keep: list = field(default_factory=list)  # keeps named objects alive, so ids stay theirs

    def tensor(self, tensor) -> str:
        return self.tensors.get(id(tensor), "")

    def node(self, node) -> str:
        return self.nodes.get(id(node), "")


def _visible(name: str) -> bool:
    return not name.startswith("__")


def names_in_frame(frame) -> Names:
    """Names of everything tensor-like that the frame can see; locals win
    over globals, and a plain name over a module attribute path."""
    scopes = [frame.f_locals] if frame is not None else []
    if frame is not None and frame.f_globals is not frame.f_locals:
        scopes.append(frame.f_globals)
    return names_from_namespace(*scopes)


def names_from_namespace(*scopes) -> Names:
    """Names from variable dicts, the first dict winning."""
    names = Names()
    modules = []
    for scope in scopes:
        for name, value in list(scope.items()):
            if not _visible(name):
                continue
            if isinstance(value, torch.Tensor):
                names.tensors.setdefault(id(value), name)
                names._keep.append(value)
                if value.grad_fn is not None:
                    names.nodes.setdefault(id(value.grad_fn), name)
                    names._keep.append(value.grad_fn)
                    if value._backward_hooks:
                        names.hooked.setdefault(id(value.grad_fn), []).append(value)
            elif isinstance(value, torch.nn.Module):
                modules.append((name, value))
    for name, module in modules:
        for sub_name, sub in module.named_modules():
            names.modules.setdefault(id(sub), f"{name}.{sub_name}" if sub_name else name)
            names._keep.append(sub)
        for parameter_name, parameter in module.named_parameters():
            # model.lin.weight says more than an alias like `w = model.lin.weight`
            names.tensors[id(parameter)] = f"{name}.{parameter_name}"
            names._keep.append(parameter)
    return names


def expression_name(expr: str) -> str:
    """A node named by the expression its line evaluates, cut to the bound
    (Note [bounded labels] in notation.py)."""
    return shorten(expr)


def composed_name(verb: str, inner: Sequence[str], plain: Sequence[bool], step: Optional[int]) -> str:
    """A name for a node nobody named, from what it applies to: ``t(w)`` for
    the transpose F.linear makes of ``w``. Only names the script gave (a
    variable, a leaf, an expression) go inside, never another composed
    name, and only while the whole fits the bound; otherwise the op and its
    step number, ``mul#12`` (or the op alone outside the call's graph).
    Nesting is what made a recurrent graph's names double at each step.

        >>> composed_name("t", ["w"], [True], 3)
        't(w)'
        >>> composed_name("mul", ["t(w)", "x"], [False, True], 12)
        'mul#12'
    """
    name = f"{verb}({', '.join(inner)})"
    if inner and all(plain) and len(name) <= LABEL_WIDTH:
        return name
    return numbered(verb, step) if step is not None else verb
