"""The optimizer update table: one row per optimizer variant.

A row states the update as torch's documentation writes it (the algorithm
boxes of torch.optim.SGD, Adam, AdamW and RMSprop), one assignment at a
time, in torch's order (torch/optim/sgd.py, adam.py, rmsprop.py,
``_single_tensor_*``). Nothing here is a derivative: these are forward
formulas, which derive/optimizer.py evaluates with sympy in float64.

Vocabulary, once for every row:
    p          the parameter's value before the step (assigned last: its new value)
    grad       its .grad before the step
    sign       -1 under maximize=True, else 1 (torch negates the gradient)
    lr, momentum, dampening, weight_decay, beta1, beta2, eps, alpha
               the parameter's group's hyperparameters (betas = (beta1, beta2))
    momentum_buffer, exp_avg, exp_avg_sq, max_exp_avg_sq, square_avg, grad_avg, step
               the optimizer's state for the parameter, by torch's names; a
               name assigned by the row is a buffer torch writes, and is
               checked against it (absent before the first step: zeros, step 0)
    t          (manual updates) the tensor the script's in-place op applies

Other assigned names (d, m_hat, v_hat, avg) are intermediate values, shown
but not checked: torch keeps no copy of them.

A row applies when all of its `when` conditions hold: a hyperparameter's
value (`"momentum": "nonzero"`, `"nesterov": True`), or `"first"`: whether
the optimizer has no state for the parameter yet (SGD starts its momentum
buffer as a copy of the gradient instead of the running sum).

    >>> [row.name for row in ROWS if row.optimizer == "AdamW"]
    ['AdamW', 'AdamW (amsgrad)']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

NONZERO = "nonzero"
ZERO = "zero"


@dataclass(frozen=True)
class UpdateRule:
    name: str  # the variant in words: "SGD with momentum"
    optimizer: str  # torch's class name, or "manual" for an in-place op under no_grad
    assignments: Tuple[Tuple[str, str], ...]  # (name, formula), in torch's order
    when: Dict[str, Any] = field(default_factory=dict)
    state: Tuple[str, ...] = ()  # the state buffers torch writes, checked after the step

    def applies(self, hyper: Dict[str, Any], first: bool) -> bool:
        for key, wanted in self.when.items():
            value = first if key == "first" else hyper.get(key)
            if wanted == NONZERO and not value:
                return False
            if wanted == ZERO and value:
                return False
            if wanted not in (NONZERO, ZERO) and bool(value) != bool(wanted):
                return False
        return True


DECAYED = ("d", "sign*grad + weight_decay*p")  # coupled weight decay: L2 added to the gradient
_SGD_UPDATE = ("p", "p - lr*d")

_ADAM_MOMENTS = (
    ("exp_avg", "exp_avg + (d - exp_avg)*(1 - beta1)"),  # torch: exp_avg.lerp_(grad, 1 - beta1)
    ("exp_avg_sq", "beta2*exp_avg_sq + (1 - beta2)*d**2"),
    ("bias_correction1", "1 - beta1**step"),
    ("bias_correction2", "1 - beta2**step"),
    ("m_hat", "exp_avg/bias_correction1"),
)
_ADAM_END = (("v_hat", "exp_avg_sq/bias_correction2"), ("p", "p - lr*m_hat/(sqrt(v_hat) + eps)"))
_AMSGRAD_END = (("max_exp_avg_sq", "Max(max_exp_avg_sq, exp_avg_sq)"),
                ("v_hat", "max_exp_avg_sq/bias_correction2"), ("p", "p - lr*m_hat/(sqrt(v_hat) + eps)"))
_ADAMW_DECAY = (("p", "p*(1 - lr*weight_decay)"), ("d", "sign*grad"))  # decoupled: the parameter shrinks first

_RMS_START = (("step", "step + 1"), DECAYED, ("square_avg", "alpha*square_avg + (1 - alpha)*d**2"))
_CENTERED = (("grad_avg", "grad_avg + (d - grad_avg)*(1 - alpha)"),
             ("avg", "sqrt(square_avg - grad_avg**2) + eps"))
_UNCENTERED = (("avg", "sqrt(square_avg) + eps"),)
_RMS_MOMENTUM = (("momentum_buffer", "momentum*momentum_buffer + d/avg"), ("p", "p - lr*momentum_buffer"))
_RMS_PLAIN = (("p", "p - lr*d/avg"),)

ROWS = (
    UpdateRule("SGD", "SGD", (DECAYED, _SGD_UPDATE), {"momentum": ZERO}),
    # the first step: torch's buffer starts as a copy of the gradient, without dampening
    UpdateRule("SGD with momentum, first step", "SGD", (DECAYED, ("momentum_buffer", "d"), ("d", "momentum_buffer"),
                                                        _SGD_UPDATE),
               {"momentum": NONZERO, "nesterov": False, "first": True}, ("momentum_buffer",)),
    UpdateRule("SGD with momentum", "SGD",
               (DECAYED, ("momentum_buffer", "momentum*momentum_buffer + (1 - dampening)*d"),
                ("d", "momentum_buffer"), _SGD_UPDATE),
               {"momentum": NONZERO, "nesterov": False, "first": False}, ("momentum_buffer",)),
    UpdateRule("SGD with Nesterov momentum, first step", "SGD",
               (DECAYED, ("momentum_buffer", "d"), ("d", "d + momentum*momentum_buffer"), _SGD_UPDATE),
               {"momentum": NONZERO, "nesterov": True, "first": True}, ("momentum_buffer",)),
    UpdateRule("SGD with Nesterov momentum", "SGD",
               (DECAYED, ("momentum_buffer", "momentum*momentum_buffer + (1 - dampening)*d"),
                ("d", "d + momentum*momentum_buffer"), _SGD_UPDATE),
               {"momentum": NONZERO, "nesterov": True, "first": False}, ("momentum_buffer",)),
    UpdateRule("Adam", "Adam", (("step", "step + 1"), DECAYED, *_ADAM_MOMENTS, *_ADAM_END),
               {"amsgrad": False}, ("step", "exp_avg", "exp_avg_sq")),
    UpdateRule("Adam (amsgrad)", "Adam", (("step", "step + 1"), DECAYED, *_ADAM_MOMENTS, *_AMSGRAD_END),
               {"amsgrad": True}, ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
    UpdateRule("AdamW", "AdamW", (("step", "step + 1"), *_ADAMW_DECAY, *_ADAM_MOMENTS, *_ADAM_END),
               {"amsgrad": False}, ("step", "exp_avg", "exp_avg_sq")),
    UpdateRule("AdamW (amsgrad)", "AdamW", (("step", "step + 1"), *_ADAMW_DECAY, *_ADAM_MOMENTS, *_AMSGRAD_END),
               {"amsgrad": True}, ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
    UpdateRule("RMSprop", "RMSprop", (*_RMS_START, *_UNCENTERED, *_RMS_PLAIN),
               {"centered": False, "momentum": ZERO}, ("step", "square_avg")),
    UpdateRule("RMSprop (centered)", "RMSprop", (*_RMS_START, *_CENTERED, *_RMS_PLAIN),
               {"centered": True, "momentum": ZERO}, ("step", "square_avg", "grad_avg")),
    UpdateRule("RMSprop with momentum", "RMSprop", (*_RMS_START, *_UNCENTERED, *_RMS_MOMENTUM),
               {"centered": False, "momentum": NONZERO}, ("step", "square_avg", "momentum_buffer")),
    UpdateRule("RMSprop (centered) with momentum", "RMSprop", (*_RMS_START, *_CENTERED, *_RMS_MOMENTUM),
               {"centered": True, "momentum": NONZERO}, ("step", "square_avg", "grad_avg", "momentum_buffer")),
    # The script's own update under torch.no_grad(): `w -= lr * w.grad` is sub_ with t = lr * w.grad.
    UpdateRule("in-place subtraction", "manual:sub_", (("p", "p - alpha*t"),)),
    UpdateRule("in-place addition", "manual:add_", (("p", "p + alpha*t"),)),
    UpdateRule("in-place multiplication", "manual:mul_", (("p", "p*t"),)),
    UpdateRule("in-place division", "manual:div_", (("p", "p/t"),)),
    UpdateRule("in-place copy", "manual:copy_", (("p", "t"),)),
)

OPTIMIZERS = tuple(sorted({row.optimizer for row in ROWS if not row.optimizer.startswith("manual:")}))

# torch's names of the in-place ops, → the row's key (the operators call the methods' rows)
MANUAL_OPS = {"sub_": "sub_", "__isub__": "sub_", "add_": "add_", "__iadd__": "add_", "mul_": "mul_",
              "__imul__": "mul_", "div_": "div_", "__itruediv__": "div_", "copy_": "copy_"}

# Default state before the first step, as torch's _init_group makes it (all zeros, step 0).
INITIAL_STATE = {"step": 0.0, "exp_avg": 0.0, "exp_avg_sq": 0.0, "max_exp_avg_sq": 0.0, "square_avg": 0.0,
                 "grad_avg": 0.0, "momentum_buffer": 0.0}

# Hyperparameters read from the group, with what stands for a flag in the formulas.
HYPERPARAMETERS = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize", "betas", "eps",
                   "alpha", "centered", "amsgrad")


def rule_for(optimizer: str, hyper: Dict[str, Any], first: bool) -> Optional[UpdateRule]:
    """The row for an optimizer class (or "manual:sub_") and its hyperparameters.

    >>> rule_for("SGD", {"momentum": 0.9, "nesterov": False}, first=True).name
    'SGD with momentum, first step'
    >>> rule_for("LBFGS", {}, first=True) is None
    True
    """
    return next((row for row in ROWS if row.optimizer == optimizer and row.applies(hyper, first)), None)
