"""Convolution: every output element is a weighted sum of the input
elements under the kernel, in index notation (`Convolution` rows).

F.conv1d/2d/3d, F.conv_transpose1d/2d/3d and the nn.Conv*/ConvTranspose*/
LazyConv* modules all record ConvolutionBackward0, whose saved arguments say
which: `stride`, `padding`, `dilation`, `output_padding` (one per spatial
dim), `groups`, `transposed`. padding='same' and 'valid' arrive as numbers
(an uneven 'same' is an F.pad node before the convolution). Without a bias
torch's node has no edge for it, and the bias term is 0.

The words of this row, beyond the operands and saved arguments:

    n, o, i     the result's batch element, channel and place along a
                spatial dim: result[n, o, i]
    c, k        the input channel within the group, the kernel's place
    Cg, Og      input and output channels per group
    K           the kernel's size along a spatial dim

For a plain convolution the output channel o belongs to group floor(o/Og),
which reads input channels floor(o/Og)·Cg + c; its kernel sits at
i·stride − padding and reads every dilation-th element. A transposed
convolution sends each input element i to the places i·stride + k·dilation −
padding; read from the output's side, result[i] takes the input at
(i + padding − k·dilation)/stride where that is a whole place, which is the
formula below. output_padding only adds places at the end of the result
(their value is the bias): the result's shape, not the formula, holds it.
"""

from .kinds import Convolution

ROWS = (
    Convolution(
        "ConvolutionBackward0", "convolution",
        "bias[o] + Sum(weight[o, c, k]*input[n, floor(o/Og)*Cg + c, i*stride + k*dilation - padding],"
        " (c, 0, Cg - 1), (k, 0, K - 1))",
        ("input", "weight", "bias"), ("stride", "padding", "dilation", "groups", "transposed", "output_padding"),
        spatial=("i", "k"), per_dim=("stride", "padding", "dilation", "K"),
        transposed_forward="bias[o] + Sum(weight[floor(o/Og)*Cg + c, o - floor(o/Og)*Og, k]"
                           "*input[n, floor(o/Og)*Cg + c, (i + padding - k*dilation)/stride], (c, 0, Cg - 1), (k, 0, K - 1))",
    ),
)
