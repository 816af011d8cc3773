"""Benchmark layer sets: real layers (N, C, H, W, K, R, S, stride, padding, groups) and a quick subset;
sweeps of one parameter at a time (stride, padding, filter count K, kernel size, batch); pooling and GEMM
cases; large images through gpuconv.dask (GPU only). Every case has a unique name (`gpuconv bench --list`)."""

from __future__ import annotations

from dataclasses import dataclass, field


def _hw(a, b):
    return f"{a}×{b}"


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

    def describe(self) -> str:
        """The layer in one line: input N×C×H×W, K filters of R×S, and stride, padding, groups when set."""
        text = f"{self.N}×{self.C}×{_hw(self.H, self.W)}, {self.K} × {_hw(self.R, self.S)}"
        for key, value, default in (("stride", self.stride, 1), ("padding", self.padding, 0),
                                    ("groups", self.groups, 1)):
            if value != default:
                text += f", {key} {value}"
        return text

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

# Each sweep varies one number (the plots' x axis, SWEEP_AXES) around 16×64×56×56 → 64, 3×3, stride 1,
# padding 1 (the case both the stride and the padding sweep pass through is run once); "same" and "valid"
# padding at strides 2 and 3 are timed too, but are not points on a numeric axis.
SWEEPS = (
    [ConvCase(f"stride_{s}", 16, 64, 56, 56, 64, 3, 3, s, 1, tags=("stride", "padding") if s == 1 else ("stride",))
     for s in (1, 2, 3, 4)]
    + [ConvCase(f"padding_{p}", 16, 64, 56, 56, 64, 3, 3, 1, p, tags=("padding",)) for p in (0, 2, 3)]
    + [ConvCase("stride2_same", 16, 64, 56, 56, 64, 3, 3, 2, "same", tags=("padding_form",)),
       ConvCase("stride3_valid", 16, 64, 56, 56, 64, 3, 3, 3, "valid", tags=("padding_form",))]
    + [ConvCase(f"filters_{k}", 16, 256, 14, 14, k, 3, 3, 1, 1, tags=("filters",))
       for k in (16, 32, 64, 128, 256, 512, 1024)]
    + [ConvCase(f"kernel_{r}", 16, 128, 28, 28, 128, r, r, 1, "same", tags=("kernel_size",)) for r in (1, 3, 5, 7)]
    + [ConvCase(f"batch_{n}", n, 64, 56, 56, 64, 3, 3, 1, 1, tags=("batch",)) for n in (1, 16, 64)]
)
FULL = STANDARD + SWEEPS

# The plotted sweeps: tag -> (x-axis label, the x value of a result row, what is held fixed, log2 x axis).
SWEEP_AXES = {
    "stride": ("stride", lambda row: row["stride"], "16×64×56×56, 64 × 3×3, padding 1", False),
    "padding": ("padding (pixels, each side)", lambda row: row["padding"], "16×64×56×56, 64 × 3×3, stride 1", False),
    "filters": ("filter count K", lambda row: row["w"][0], "16×256×14×14, K × 3×3, padding 1", True),
    "kernel_size": ("kernel size R = S", lambda row: row["w"][2], "16×128×28×28, 128 × R×R, padding same", False),
    "batch": ("batch N", lambda row: row["x"][0], "N×64×56×56, 64 × 3×3, padding 1", True),
}


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

    def describe(self) -> str:
        """The case in one line: input, window, stride, padding."""
        text = f"{self.N}×{self.C}×{_hw(self.H, self.W)}, {self.op} {_hw(self.kernel, self.kernel)}, stride {self.stride}"
        return text + (f", padding {self.padding}" if self.padding else "")

    def scaled(self, max_hw=13, max_c=4, max_n=2):
        """The same window, stride and padding at a size the CUDA simulator can run."""
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

    def describe(self) -> str:
        """(M × K) · (K × N)."""
        return f"({self.M} × {self.K}) · ({self.K} × {self.N})"

    def scaled(self, max_dim=40):
        """The product with every dimension capped at max_dim (a size the CUDA simulator can run)."""
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

    def describe(self) -> str:
        """The layer, and the chunk size of the dask array."""
        return f"{self.layer.describe()}, chunks {_hw(self.chunk, self.chunk)}"


DASK = [DaskCase(ConvCase("large_image_5x5", 1, 3, 16384, 16384, 8, 5, 5, 1, 2, tags=("dask",)), 4096)]  # 3.2 GB in


def every_case() -> list[tuple[str, object]]:
    """(kind, case) for every named case: convolutions (standard set and sweeps), pooling, GEMM, large images."""
    return ([("conv", c) for c in FULL] + [("pool", c) for c in POOLS] + [("gemm", c) for c in GEMMS]
            + [("dask", c) for c in DASK])


def quick_names() -> set[str]:
    """The names `gpuconv bench --quick` (the default) runs."""
    return {c.name for c in QUICK + QUICK_POOLS + QUICK_GEMMS}
