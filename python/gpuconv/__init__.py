"""gpuconv: convolution and pooling kernels hand-written in Numba CUDA.

`gpu_conv2d` and friends run our kernels on a CUDA device (or, with none, in Numba's CUDA simulator);
`gpuconv.reference` holds the same operations in float64 NumPy; `gpuconv.shapes` the size formulas.
"""

from . import _runtime  # first: decides simulator or device before numba is imported
from ._precision import allow_tf32, set_allow_tf32
from . import filters, reference, shapes
from .backward import gpu_conv2d_backward, gpu_conv_transpose2d, gpu_conv_transpose2d_backward
from .conv import gpu_conv2d
from .gemm import gpu_linear, gpu_matmul
from .im2col import set_workspace_limit, workspace_limit
from .pool import gpu_avg_pool2d, gpu_global_avg_pool2d, gpu_global_max_pool2d, gpu_max_pool2d
from .pool_backward import (gpu_avg_pool2d_backward, gpu_global_avg_pool2d_backward,
                            gpu_global_max_pool2d_backward, gpu_max_pool2d_backward)

SIMULATOR = _runtime.SIMULATOR
__version__ = "0.1.0"

__all__ = ["gpu_conv2d", "gpu_conv2d_backward", "gpu_conv_transpose2d", "gpu_conv_transpose2d_backward", "gpu_matmul", "gpu_linear", "set_workspace_limit", "workspace_limit", "allow_tf32", "set_allow_tf32", "gpu_max_pool2d", "gpu_avg_pool2d", "gpu_global_max_pool2d", "gpu_global_avg_pool2d",
           "gpu_max_pool2d_backward", "gpu_avg_pool2d_backward", "gpu_global_max_pool2d_backward",
           "gpu_global_avg_pool2d_backward",
           "SIMULATOR", "filters", "reference", "shapes", "__version__"]
