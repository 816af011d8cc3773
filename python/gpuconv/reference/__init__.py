"""gpuconv.reference: every operation of gpuconv in float64 NumPy, with PyTorch's semantics.

Vectorised (loops run over kernel taps at most, never over pixels or channels), and itself tested
against hand-computed cases, a plain loop formulation and finite differences. GPU kernels are checked
against it.
"""

from .activations import (activation, activation_grad, elu, elu_grad, gelu, gelu_grad, leaky_relu, leaky_relu_grad,
                          relu, relu_grad, sigmoid, sigmoid_grad, silu, silu_grad, tanh, tanh_grad)
from .conv import conv2d, conv2d_backward, conv_transpose2d, linear
from .pool import (avg_pool2d, avg_pool2d_backward, global_avg_pool2d, global_avg_pool2d_backward,
                   global_max_pool2d, global_max_pool2d_backward, max_pool2d, max_pool2d_backward)
from .unfold import col2im, im2col

__all__ = [
    "conv2d", "conv2d_backward", "conv_transpose2d", "linear",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "global_max_pool2d", "global_max_pool2d_backward", "global_avg_pool2d", "global_avg_pool2d_backward",
    "im2col", "col2im",
    "activation", "activation_grad", "relu", "relu_grad", "leaky_relu", "leaky_relu_grad",
    "sigmoid", "sigmoid_grad", "tanh", "tanh_grad", "elu", "elu_grad", "gelu", "gelu_grad", "silu", "silu_grad",
]
