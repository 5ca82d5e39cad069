"""Reports of small scripts run in-process, for the Markdown and HTML
renderers' tests; `wrong` alters what torch wrote before the checks, so a
test can see a mismatch rendered (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import dataclasses
import textwrap


def traced(tmp_path, code: str, wrong=None):
    """A script run in-process and its Report; `wrong(run)` may alter what torch wrote before the checks."""
    from graphexplain.capture.runner import run_script
    from graphexplain.report import Report

    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    run = run_script(str(script))
    if wrong is not None:
        wrong(run)
    return Report.of(run)


def _momentum_one_percent_off(run) -> None:
    (step,) = run.calls[0].updates
    after = step.after[0]
    bad = dataclasses.replace(after, state={"momentum_buffer": after.state["momentum_buffer"] * 1.01})
    run.calls[0].updates[0] = dataclasses.replace(step, after=(bad,))


def wrong_momentum_report(tmp_path):
    """An SGD step with momentum whose stored momentum buffer torch 'wrote' 1% too large."""
    return traced(tmp_path, """
        import torch
        w = torch.tensor([0.5, -1.0], requires_grad=True)
        optimizer = torch.optim.SGD([w], lr=0.1, momentum=0.9)
        (w ** 2).sum().backward()
        optimizer.step()
    """, _momentum_one_percent_off)
