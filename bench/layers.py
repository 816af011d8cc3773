"""Benchmark layer sets: real layers (N, C, H, W, K, R, S, stride, padding, groups) and a quick subset;
pooling and GEMM cases; large images through gpuconv.dask (GPU only)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ConvCase:
    name: str
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    stride: object = 1
    padding: object = 0
    groups: int = 1
    tags: tuple = field(default=("standard",))

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    @property
    def w_shape(self):
        return (self.K, self.C // self.groups, self.R, self.S)

    def scaled(self, max_hw=12, max_c=8, max_n=2):
        """The same layer (kernel, stride, padding, groups) at a size the CUDA simulator can run."""
        g = self.groups
        C = min(self.C, max_c) if g == 1 else min(self.C, max_c) // g * g or g
        if g == self.C:
            C = g = min(self.C, max_c)
        K = min(self.K, max_c) // g * g or g
        H = max(min(self.H, max_hw), (self.R - 1) + 1)
        W = max(min(self.W, max_hw), (self.S - 1) + 1)
        return ConvCase(self.name, min(self.N, max_n), C, H, W, K, self.R, self.S, self.stride, self.padding, g,
                        self.tags)


STANDARD = [
    ConvCase("resnet_stem", 16, 3, 224, 224, 64, 7, 7, 2, 3),
    ConvCase("vgg_conv1", 16, 3, 224, 224, 64, 3, 3, 1, 1),
    ConvCase("resnet_3x3_56", 16, 64, 56, 56, 64, 3, 3, 1, 1),
    ConvCase("resnet_3x3_28", 16, 128, 28, 28, 128, 3, 3, 1, 1),
    ConvCase("resnet_3x3_14", 16, 256, 14, 14, 256, 3, 3, 1, 1),
    ConvCase("resnet_3x3_7", 16, 512, 7, 7, 512, 3, 3, 1, 1),
    ConvCase("transition_s2", 16, 128, 56, 56, 128, 3, 3, 2, 1),
    ConvCase("1x1_64_256", 16, 64, 56, 56, 256, 1, 1),
    ConvCase("1x1_256_64", 16, 256, 56, 56, 64, 1, 1),
    ConvCase("1x1_s2_512_1024", 16, 512, 28, 28, 1024, 1, 1, 2, 0),
    ConvCase("1x1_2048_512", 16, 2048, 7, 7, 512, 1, 1),
    ConvCase("3x3_112", 16, 64, 112, 112, 128, 3, 3, 1, 1),
    ConvCase("googlenet_5x5", 16, 192, 28, 28, 32, 5, 5, 1, 2),
    ConvCase("alexnet_11x11", 128, 3, 128, 128, 96, 11, 11),
    ConvCase("alexnet_3x3", 128, 384, 13, 13, 384, 3, 3, 1, 1),
    ConvCase("deepspeech", 16, 1, 161, 700, 32, 5, 20, 2),
    ConvCase("latency_b1", 1, 256, 14, 14, 256, 3, 3, 1, 1),
    ConvCase("depthwise_3x3", 16, 256, 56, 56, 256, 3, 3, 1, 1, 256),
]

QUICK_NAMES = ("resnet_stem", "resnet_3x3_56", "transition_s2", "1x1_64_256", "latency_b1", "depthwise_3x3")
QUICK = [c for c in STANDARD if c.name in QUICK_NAMES]

SWEEPS = (
    [ConvCase(f"stride{s}_pad{p}", 16, 64, 56, 56, 64, 3, 3, s, p, tags=("stride_padding",))
     for s, p in ((1, 0), (1, 1), (2, 1), (2, "same"), (3, "valid"))]
    + [ConvCase(f"filters_{k}", 16, 256, 14, 14, k, 3, 3, 1, 1, tags=("filters",))
       for k in (16, 32, 64, 128, 256, 512, 1024)]
    + [ConvCase(f"kernel_{r}", 16, 128, 28, 28, 128, r, r, 1, "same", tags=("kernel_size",)) for r in (1, 3, 5, 7)]
    + [ConvCase(f"batch_{n}", n, 64, 56, 56, 64, 3, 3, 1, 1, tags=("batch",)) for n in (1, 16, 64)]
)
FULL = STANDARD + SWEEPS


@dataclass(frozen=True)
class PoolCase:
    name: str
    op: str                    # "max" or "avg"
    N: int
    C: int
    H: int
    W: int
    kernel: int
    stride: int
    padding: int = 0

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    def scaled(self, max_hw=13, max_c=4, max_n=2):
        return PoolCase(self.name, self.op, min(self.N, max_n), min(self.C, max_c), min(self.H, max_hw),
                        min(self.W, max_hw), self.kernel, self.stride, self.padding)


POOLS = [
    PoolCase("resnet_stem_maxpool", "max", 32, 64, 112, 112, 3, 2, 1),
    PoolCase("vgg_maxpool", "max", 16, 128, 56, 56, 2, 2),
    PoolCase("avgpool_3x3_s2", "avg", 16, 128, 56, 56, 3, 2, 1),
    PoolCase("maxpool_large_256MB", "max", 64, 256, 64, 64, 2, 2),          # 268 MB of float32 input
]
QUICK_POOLS = POOLS[:1]


@dataclass(frozen=True)
class GemmCase:
    name: str
    M: int
    N: int
    K: int

    def scaled(self, max_dim=40):
        return GemmCase(self.name, min(self.M, max_dim), min(self.N, max_dim), min(self.K, max_dim))


GEMMS = [
    GemmCase("sgemm_1024", 1024, 1024, 1024),
    GemmCase("sgemm_4096", 4096, 4096, 4096),
    GemmCase("conv_resnet_3x3_14", 256, 16 * 14 * 14, 256 * 9),      # K × (N·P·Q) × (C·R·S) of resnet_3x3_14
    GemmCase("conv_1x1_256_64", 64, 16 * 56 * 56, 256),
    GemmCase("conv_resnet_3x3_56", 64, 16 * 56 * 56, 64 * 9),
]
QUICK_GEMMS = GEMMS[:1]


@dataclass(frozen=True)
class DaskCase:
    """An image too large to want in one piece: gpuconv.dask.conv2d over chunk × chunk blocks of CuPy
    arrays against one gpu_conv2d call on the whole array. GPU only: the simulator cannot run it."""
    layer: ConvCase         # stride 1, no groups
    chunk: int              # spatial chunk size (rows and columns) of the dask array

    @property
    def name(self):
        return self.layer.name


DASK = [DaskCase(ConvCase("large_image_5x5", 1, 3, 16384, 16384, 8, 5, 5, 1, 2, tags=("dask",)), 4096)]  # 3.2 GB in
