"""Custom autograd.Functions, checked against the derivative of their own
forward (capture/recapture.py, derive/function.py): a right backward is
verified, a wrong one is caught and explained, each ctx feature works, and
tracing leaves the script's output as it was."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.autograd.function import once_differentiable

import graphexplain
from graphexplain.results import INTENTIONAL, MISMATCH, NO_RULE, NOT_DERIVED, SEVERITY, UNCHECKED, VERIFIED

TESTS = Path(__file__).resolve().parent
SCRIPTS = TESTS / "scripts"


def words(text: str) -> str:
    """The text with its line breaks and padding folded into single spaces."""
    return " ".join(text.split())


def function_step(explanation, op: str):
    [step] = [s for s in explanation.steps if s.op == op]
    return step


# --- Functions for the in-process checks -------------------------------------------


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x ** 2


def wrong_cube(factor=1.0, element=None):
    """A Cube whose backward is scaled by `factor`, or off by 1 at `element`."""

    class WrongCube(Cube):  # Cube's forward; its backward, then the fault
        @staticmethod
        def backward(ctx, grad):
            result = Cube.backward(ctx, grad) * factor
            if element is not None:
                result = result.clone()
                result[element] += 1.0
            return result

    return WrongCube


class Exp(torch.autograd.Function):
    """Saves its output, and its backward is once_differentiable."""

    @staticmethod
    def forward(ctx, x):
        result = x.exp()
        ctx.save_for_backward(result)
        return result

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (result,) = ctx.saved_tensors
        return grad * result


class Product(torch.autograd.Function):
    """Returns a gradient only where ctx.needs_input_grad asks for one."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return (grad * b if ctx.needs_input_grad[0] else None,
                grad * a if ctx.needs_input_grad[1] else None)


class ScaleAndSign(torch.autograd.Function):
    """Non-tensor arguments, a tuple of outputs, one marked non-differentiable."""

    @staticmethod
    def forward(ctx, x, scale, mode):
        y = x * scale if mode == "times" else x / scale
        sign = (y > 0).long()
        ctx.mark_non_differentiable(sign)
        ctx.factor = scale if mode == "times" else 1 / scale
        return y, sign

    @staticmethod
    def backward(ctx, grad, grad_sign):
        return grad * ctx.factor, None, None


class SetupStyle(torch.autograd.Function):
    """torch >= 2.0: forward without ctx, then setup_context."""

    @staticmethod
    def forward(x, power):
        return x ** power

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, power = inputs
        ctx.save_for_backward(x)
        ctx.power = power

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.power * x ** (ctx.power - 1), None


class Outer(torch.autograd.Function):
    """A Function whose forward applies another Function."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return Exp.apply(x) * 2

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 2 * x.exp()


class ForgetsOther(torch.autograd.Function):
    """Returns None for an input that needs a gradient: torch takes it as zero."""

    @staticmethod
    def forward(ctx, x, y):
        return x * 2 + y

    @staticmethod
    def backward(ctx, grad):
        return grad * 2, None


class TakesItem(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * x.sum().item()

    @staticmethod
    def backward(ctx, grad):
        return grad


class UsesQr(torch.autograd.Function):
    """Its forward uses an op without a row (a QR decomposition)."""

    @staticmethod
    def forward(ctx, x):
        return torch.linalg.qr(x).R

    @staticmethod
    def backward(ctx, grad):
        return torch.zeros_like(grad)


@graphexplain.intentional_gradient("straight-through estimator")
class RoundThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


X = torch.tensor([0.3, -1.2, 2.0], requires_grad=True)
Y = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
CONSTANT = torch.tensor([1.0, 2.0, 3.0])


# --- a right backward is verified ---------------------------------------------------


@pytest.mark.parametrize("function,inputs", [
    (Cube, (X,)), (Exp, (X,)), (Product, (X, CONSTANT)), (Product, (X, Y)), (ScaleAndSign, (X, 1.5, "times")),
    (ScaleAndSign, (X, 4.0, "over")), (SetupStyle, (X, 3)), (Outer, (X,)),
], ids=["cube", "once-differentiable-saves-output", "needs-input-grad-one", "needs-input-grad-both",
        "non-tensor-args-tuple-non-differentiable", "non-tensor-args-other-mode", "setup-context", "nested"])
def test_right_backward_is_verified(function, inputs):
    explanation = graphexplain.assert_function_correct(function, *inputs)
    assert explanation.status == VERIFIED, str(explanation)
    step = function_step(explanation, f"{function.__name__}Backward")
    assert step.derivation.title == f"{function.__name__} (custom Function)"
    assert step.node.inner.graph is not None


def test_nested_function_is_an_inner_graph_of_its_own():
    step = function_step(graphexplain.check_function(Outer, X), "OuterBackward")
    [nested] = [n for n in step.node.inner.graph.nodes if n.op == "ExpBackward"]
    assert nested.inner is not None and nested.inner.graph is not None
    assert [n.op for n in nested.inner.graph.nodes] == ["ExpBackward0", "AccumulateGrad"]


def test_function_used_twice_in_one_graph():
    with graphexplain.recording():
        x = torch.tensor([0.5, -1.0, 1.5], requires_grad=True)
        loss = Cube.apply(Cube.apply(x) * 0.5).sum()
    explanation = graphexplain.explain(loss)
    assert explanation.status == VERIFIED, str(explanation)
    assert [s.op for s in explanation.steps].count("CubeBackward") == 2
    np.testing.assert_allclose(explanation.leaf("x").derived_grad, 3 * (0.5 * x.detach() ** 3) ** 2 * 1.5 * x.detach() ** 2)


def test_the_derivative_is_sympys_formula_of_the_composed_forward():
    step = function_step(graphexplain.check_function(Cube, X), "CubeBackward")
    [local] = step.derivation.local_gradients
    assert local.expr == "3*x**2"
    assert step.derivation.forward_named == "x**3"


# --- a wrong backward is caught, named and explained ----------------------------------


@pytest.mark.parametrize("factor,said", [
    (2 / 3, "the backward returns 2/3 of the derivative"), (-1.0, "the sign is flipped"),
    (2.0, "the backward returns 2 times the derivative"), (1.37, "the backward returns 1.37 times the derivative"),
])
def test_scaled_backward_is_caught_with_its_factor(factor, said):
    function = wrong_cube(factor)
    explanation = graphexplain.check_function(function, X)
    assert explanation.status == MISMATCH
    step = function_step(explanation, "WrongCubeBackward")
    assert step.status == MISMATCH
    assert said in step.verification.reason
    assert "WrongCube.backward" in step.verification.reason and "X (input 1)" in step.verification.reason
    with pytest.raises(AssertionError) as raised:
        graphexplain.assert_function_correct(function, X)
    message = str(raised.value)
    assert said in message and "first at [0]" in message
    assert len(message.splitlines()) <= 4  # a few lines, never a matrix dump


def test_one_wrong_element_is_named_with_both_numbers():
    explanation = graphexplain.check_function(wrong_cube(element=2), X)
    reason = function_step(explanation, "WrongCubeBackward").verification.reason
    check = next(c for c in function_step(explanation, "WrongCubeBackward").verification.checks
                 if c.status == MISMATCH)
    index, derived, returned = check.first_difference
    assert index == (2,) and returned == pytest.approx(derived + 1.0, abs=1e-5)
    assert f"first at [2], where the forward's derivative is {derived:.6g} and the backward returns " \
           f"{returned:.6g}" in reason
    assert "times the derivative" not in reason and "of the derivative" not in reason


def test_a_backward_returning_none_for_an_input_that_needs_one_is_caught():
    explanation = graphexplain.check_function(ForgetsOther, X, Y)
    reason = function_step(explanation, "ForgetsOtherBackward").verification.reason
    assert explanation.status == MISMATCH
    assert "for Y (input 2)" in reason and "the backward returns 0" in reason


@pytest.mark.parametrize("mistake,said", [
    ("scaled", "the backward returns 2/3 of the derivative"), ("flipped", "the sign is flipped"),
    ("transposed", "the backward returns the transpose of the derivative"), ("element", "first at [1, 2]"),
])
def test_trace_of_a_wrong_backward_exits_1_and_names_the_function(graphexplain_main, mistake, said):
    run = graphexplain_main("trace", SCRIPTS / "wrong_function.py", mistake)
    assert run.returncode == 1, run.output
    text = words(run.stdout)
    assert "Product.backward disagrees with the derivative of Product.forward for a (input 1)" in text
    assert said in text
    assert "Traceback" not in run.output


def test_trace_of_the_right_backward_exits_0(graphexplain_main):
    run = graphexplain_main("trace", SCRIPTS / "wrong_function.py", "right")
    assert run.returncode == 0, run.output


# --- what cannot be checked says why, in one sentence ------------------------------------


def test_forward_calling_numpy_is_no_rule_with_the_sentence(graphexplain_main):
    run = graphexplain_main("trace", SCRIPTS / "custom_function.py")
    assert run.returncode == 5, run.output
    assert "Traceback" not in run.output
    assert "its forward calls .numpy() on a tensor, taking the numbers out of torch" in words(run.stdout)


def test_forward_calling_item_is_not_followed():
    step = function_step(graphexplain.check_function(TakesItem, X), "TakesItemBackward")
    assert step.status == NO_RULE
    assert "calls .item()" in step.derivation.note
    with pytest.raises(AssertionError, match="TakesItem could not be checked"):
        graphexplain.assert_function_correct(TakesItem, X)


def test_forward_with_an_op_without_a_rule_is_not_derived():
    x = torch.randn(3, 3, requires_grad=True)
    explanation = graphexplain.check_function(UsesQr, x)
    step = function_step(explanation, "UsesQrBackward")
    assert step.status == NOT_DERIVED
    assert "LinalgQrBackward0" in step.derivation.note
    assert all(leaf.status == UNCHECKED for leaf in explanation.verification.leaves)  # ✓ never on torch's numbers


def test_forward_drawing_random_numbers_is_not_checked_and_the_script_draws_the_same(launch, tmp_path):
    script = SCRIPTS / "random_function.py"
    plain = launch.python(script, cwd=tmp_path)
    traced = launch.graphexplain("trace", "--format", "dot", script, cwd=tmp_path).result()
    plain = plain.result()
    assert traced.returncode == 5, traced.output
    assert "gives other numbers for output 1 than the script got" in words(traced.stdout)
    assert traced.stdout.startswith(plain.stdout)


# --- surrogate gradients on purpose -------------------------------------------------------


def test_intentional_gradient_is_its_own_status_and_not_a_failure(graphexplain_main):
    run = graphexplain_main("trace", SCRIPTS / "intentional_function.py")
    assert run.returncode == 5, run.output  # not 1: no mismatch; below it only torch's numbers
    text = words(run.stdout)
    assert "differs from the forward's derivative (intentional: straight-through estimator" in text
    assert "✗" not in run.stdout


def test_intentional_gradient_in_process():
    explanation = graphexplain.assert_function_correct(RoundThrough, X * 2)  # passes: on purpose
    step = function_step(explanation, "RoundThroughBackward")
    assert step.status == INTENTIONAL
    assert RoundThrough.graphexplain_intentional == "straight-through estimator"
    assert INTENTIONAL in SEVERITY and SEVERITY.index(INTENTIONAL) == SEVERITY.index(NO_RULE) + 1
    below = [s for s in explanation.steps if s.node.id > step.node.id]
    assert below and all(s.status != VERIFIED for s in below)


# --- whole scripts ----------------------------------------------------------------------


def test_legendre_fit_traces_verified_with_the_derived_legendre_derivative(graphexplain_main):
    run = graphexplain_main("trace", SCRIPTS / "legendre_function.py")
    assert run.returncode == 0, run.output
    text = words(run.stdout)
    assert "Legendre3 (custom Function)" in text
    assert "p3 = t*(5*t**2 - 3)/2" in text
    assert "∂p3/∂t = 3*(5*t**2 - 1)/2, at t = c + d * x" in text
    assert "PowBackward0: t ** 3 (legendre_function.py:16)" in text


@pytest.mark.parametrize("script,args", [
    ("cube_function.py", []), ("relu_function_net.py", []), ("setup_context_function.py", []),
    ("double_backward_function.py", ["--call", "all"]),
])
def test_stranger_scripts_trace_verified(graphexplain_main, script, args):
    run = graphexplain_main("trace", *args, SCRIPTS / script)
    assert run.returncode == 0, run.output
    assert "(custom Function)" in words(run.stdout)


@pytest.mark.parametrize("script", ["legendre_function.py", "relu_function_net.py", "cube_function.py"])
def test_tracing_leaves_the_printed_output_unchanged(launch, tmp_path, script):
    plain = launch.python(SCRIPTS / script, cwd=tmp_path)
    traced = launch.graphexplain("trace", "--format", "dot", SCRIPTS / script, cwd=tmp_path).result()
    plain = plain.result()
    assert plain.returncode == 0 and traced.returncode == 0, traced.output
    rule = re.search(r"^═+ graphexplain ═+$", traced.stdout, re.MULTILINE)
    assert rule is not None, traced.stdout[-2000:]
    assert traced.stdout[:rule.start()] == plain.stdout


# --- the JSON and the picture -------------------------------------------------------------


def test_json_shows_the_forward_and_the_diagnosis(graphexplain_main, tmp_path):
    run = graphexplain_main("trace", "--json", tmp_path / "out.json", SCRIPTS / "wrong_function.py", "flipped")
    assert run.returncode == 1, run.output
    [call] = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))["backward_calls"]
    [node] = [n for n in call["nodes"] if n["op"] == "ProductBackward"]
    assert node["function"]["class"] == "Product"
    assert [op["op"] for op in node["function"]["forward_ops"]] == ["MmBackward0"]
    assert node["function"]["inputs"] == ["a", "b"]
    [check] = [c for c in node["checks"] if c["status"] == "mismatch"]
    assert check["diagnosis"].startswith("the sign is flipped")
    assert check["first_difference"]["index"] == [0, 0]


def test_picture_labels_the_node_as_a_custom_function():
    assert "Cube (custom Function)" in graphexplain.check_function(Cube, X).to_dot()
