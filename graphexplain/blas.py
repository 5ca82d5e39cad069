"""One BLAS thread while graphexplain derives and verifies.

Note [one BLAS thread]
The derivation and the checks do thousands of small matrix products (one
per node, one per kernel offset of a convolution). numpy's OpenBLAS splits
even a small product across its threads, which then spin-wait for one
another and for the OpenMP threads torch keeps from the user's script; on a
busy two-core machine an 8×512 by 512×256 product took 6 to 18 ms instead
of 0.15, and a ResNet-18's explanation ten times longer than its work.
While an explanation is made, numpy's BLAS runs on one thread; the limit is
lifted when it is done, so what the user's script computes, before or after,
is untouched. It uses threadpoolctl (a dependency); were it missing, nothing would change.

    >>> with one_thread():
    ...     pass

`graphexplain trace` limits it for the rest of the process once the
script has run (`one_thread_from_now`): the report, the pictures and the
JSON are ours alone, and the script computes nothing more.
"""

from __future__ import annotations

import contextlib


def one_thread():
    """A context in which numpy's BLAS uses one thread (Note [one BLAS thread])."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional speed-up, not a dependency
        return contextlib.nullcontext()
    try:
        return threadpool_limits(limits=1, user_api="blas")
    except Exception:  # a BLAS threadpoolctl cannot read is left as it is
        return contextlib.nullcontext()


def one_thread_from_now() -> None:
    """numpy's BLAS on one thread until the process ends: for the CLI, once
    the user's script is done (Note [one BLAS thread])."""
    one_thread().__enter__()
