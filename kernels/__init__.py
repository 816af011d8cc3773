"""gpuconv.kernels: the @cuda.jit kernels, one module per algorithm family."""
