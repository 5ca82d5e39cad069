"""Fused kernels, written out: the node's forward as a composite of ops that
have rows of their own (`Composite`, Note in kinds.py).

torch runs some ops as one fused kernel with a hand-written backward: the
oneDNN LSTM layer on float32 CPU tensors, flash attention on CPU. No single
formula is their forward, but a few lines of torch are: the gate equations
of an LSTM cell applied step by step, softmax(q·kᵀ·scale)·v. Each row names
such a function of `graphexplain.capture.composites`; graphexplain runs it
on float64 copies of the tensors torch saved on the node and derives the
graph it builds, op by op, from those ops' rows. The fused kernel's backward
is then checked like a custom Function's.

    >>> ROWS[0].forward
    'lstm_layer'
"""

from .kinds import Composite

ROWS = (
    # torch.nn.LSTM on float32 CPU tensors: one node per layer and direction,
    # saved input seq-first (a batch_first input is transposed before it)
    Composite("MkldnnRnnLayerBackward0", "LSTM layer (fused oneDNN kernel)", "lstm_layer",
              ("input", "weight0", "weight1", "weight2", "weight3", "hx_", "cx_"),
              params=("reverse", "has_biases", "mode"),
              outputs=("result0", "result1", "result2", "result3")),  # output, h_n, c_n, the kernel's workspace
    # F.scaled_dot_product_attention (and nn.MultiheadAttention, nn.Transformer*)
    # where torch picks the CPU flash kernel; the mask is a constant of the node
    Composite("ScaledDotProductFlashAttentionForCpuBackward0", "scaled dot-product attention (flash kernel)",
              "attention", ("query", "key", "value"),
              params=("attn_mask", "dropout_p", "is_causal", "scale"),
              outputs=("output", "logsumexp")),
)
