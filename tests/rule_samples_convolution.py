"""Samples for the convolution row (graphexplain/rules/convolution.py).

Every way torch's ConvolutionBackward0 is met: 1-, 2- and 3-d, stride,
padding as an int, a tuple, 'same' (odd and even kernels: an even one pads
the input with an F.pad node first) and 'valid', dilation, groups
(depthwise too), no bias, transposed with stride, output_padding, dilation
and groups, a batch of one and unbatched inputs.
"""

from __future__ import annotations

import warnings

import torch.nn.functional as F

from rule_sampling import BASIC, real, sample


def same_even(x, w):
    """padding='same' with an even kernel: torch pads with F.pad first, and warns that it does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return F.conv1d(x, w, padding="same")


SAMPLES = {
    "ConvolutionBackward0": {
        BASIC: sample(F.conv2d, x=real(2, 3, 6, 6), w=real(4, 3, 3, 3), b=real(4)),
        "conv1d": sample(F.conv1d, x=real(2, 3, 9), w=real(4, 3, 3), b=real(4)),
        "conv3d": sample(F.conv3d, x=real(2, 2, 4, 5, 4), w=real(3, 2, 2, 3, 2), b=real(3)),
        "stride": sample(lambda x, w, b: F.conv2d(x, w, b, stride=2),
                         x=real(2, 3, 7, 6), w=real(4, 3, 3, 2), b=real(4)),
        "stride-tuple": sample(lambda x, w: F.conv2d(x, w, stride=(1, 3)), x=real(1, 2, 5, 8), w=real(3, 2, 2, 2)),
        "padding": sample(lambda x, w, b: F.conv2d(x, w, b, padding=2),
                          x=real(2, 3, 5, 5), w=real(2, 3, 3, 3), b=real(2)),
        "padding-tuple": sample(lambda x, w, b: F.conv2d(x, w, b, padding=(0, 1)),
                                x=real(2, 3, 5, 5), w=real(2, 3, 3, 3), b=real(2)),
        "padding-same": sample(lambda x, w, b: F.conv2d(x, w, b, padding="same"),
                               x=real(2, 2, 5, 6), w=real(3, 2, 3, 5), b=real(3)),
        "padding-same-even": sample(same_even, x=real(2, 2, 7), w=real(3, 2, 4)),
        "padding-valid": sample(lambda x, w, b: F.conv1d(x, w, b, padding="valid"), x=real(2, 2, 7), w=real(3, 2, 4),
                                b=real(3)),
        "dilation": sample(lambda x, w, b: F.conv2d(x, w, b, padding=1, dilation=2), x=real(2, 2, 7, 7),
                           w=real(3, 2, 3, 3), b=real(3)),
        "dilation-stride-3d": sample(
            lambda x, w: F.conv3d(x, w, stride=(2, 1, 1), padding=(1, 0, 1), dilation=(1, 2, 1)),
            x=real(1, 2, 5, 5, 4), w=real(2, 2, 3, 2, 2)),
        "groups": sample(lambda x, w, b: F.conv2d(x, w, b, groups=2),
                         x=real(2, 4, 5, 5), w=real(6, 2, 3, 3), b=real(6)),
        "depthwise": sample(lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=3), x=real(2, 3, 5, 5),
                            w=real(6, 1, 3, 3), b=real(6)),
        "no-bias": sample(F.conv2d, x=real(2, 3, 5, 5), w=real(2, 3, 2, 2)),
        "batch-of-one": sample(F.conv2d, x=real(1, 3, 5, 5), w=real(2, 3, 3, 3), b=real(2)),
        "unbatched-1d": sample(F.conv1d, x=real(3, 8), w=real(2, 3, 3), b=real(2)),
        "unbatched-2d": sample(lambda x, w, b: F.conv2d(x, w, b, padding=1),
                               x=real(3, 5, 5), w=real(2, 3, 3, 3), b=real(2)),
        "unbatched-3d": sample(F.conv3d, x=real(2, 3, 4, 3), w=real(2, 2, 2, 2, 2), b=real(2)),
        "transposed-1d": sample(
            lambda x, w, b: F.conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1, dilation=2),
            x=real(2, 3, 5), w=real(3, 2, 3), b=real(2)),
        "transposed-2d": sample(lambda x, w, b: F.conv_transpose2d(x, w, b, stride=(2, 3), padding=(1, 0),
                                                                   output_padding=(1, 2), groups=2),
                                x=real(2, 4, 3, 3), w=real(4, 3, 3, 3), b=real(6)),
        "transposed-3d": sample(lambda x, w: F.conv_transpose3d(x, w, stride=2, output_padding=1, dilation=(1, 2, 1)),
                                x=real(1, 2, 2, 3, 2), w=real(2, 3, 2, 2, 2)),
        "transposed-plain": sample(F.conv_transpose2d, x=real(2, 3, 4, 4), w=real(3, 2, 3, 3), b=real(2)),
        "transposed-depthwise": sample(lambda x, w: F.conv_transpose1d(x, w, stride=3, groups=4), x=real(2, 4, 4),
                                       w=real(4, 1, 2)),
        "transposed-unbatched": sample(lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2), x=real(2, 3, 3),
                                       w=real(2, 3, 2, 2), b=real(3)),
    },
}
