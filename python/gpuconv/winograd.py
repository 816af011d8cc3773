"""gpu_conv2d(algo="winograd" | "winograd_2x2"): F(4×4, 3×3) or F(2×2, 3×3) on gpuconv.kernels.winograd
and our GEMM, for 3×3 stride-1 dilation-1 ungrouped layers (any padding form and mode).

Workspace per image: a²·(C + K)·tiles elements (V and M), plus a²·K·C for U and one element for the
non-finite flag; images are processed in chunks so it stays under `gpuconv.set_workspace_limit` (and a
chunk's tiles under 2**31).

The a² products M[e] = U[e] @ V[e] run on the CUDA cores (gpuconv.kernels.gemm) in the workspace's
dtype, or, for float32 with TF32 allowed, on the TF32 tensor cores (gpuconv.kernels.gemm_tc, "tf32").

float16 / bfloat16 run natively: the transforms' 16-bit builds read x, the weights and the bias as
16-bit data and write y rounded once (to nearest even) from its float32 value; nothing is widened
around them. The workspace U, V, M stays float32: transformed values are not exact in 16 bits (G has
1/6 and 1/24 entries; Bᵀ d B sums up to 36 inputs with factors up to 25), and F(4×4)'s input transform
grows values up to 100× (past float16's 65504 for inputs above 655). Their products run in float32 on
the CUDA cores, so the result is float32 Winograd's (relative error 1e-7 / 1e-6 for F(2×2) / F(4×4))
rounded once: within u + K·2^-24 as the other 16-bit paths. TF32 products were measured and rejected
for them: on random data (C = 16 and 64) they gave ‖ŷ − y‖ / ‖y‖ of 5.4e-4 / 2.3–2.8e-3 for float16
(2.5× / 11–13× PyTorch's CPU float16 convolution, 2.1e-4) and 1.7e-3 / 3.0–3.3e-3 for bfloat16.

TF32 error (float32 with TF32 allowed): Winograd's error is relative to the magnitudes in each patch,
not to the result. TF32 rounds each element of U and V to 11 significant bits (relative error ≤ 2^-11;
the products are then exact in float32), so to first order every output (before any activation)
satisfies, componentwise,
    |ŷ − y| ≤ ε·Φ,   Φ = |Aᵀ| [Σ_c (|G| |g_c| |Gᵀ|) ⊙ (|Bᵀ| |d_c| |B|)] |A|,
    ε = 2^-10 + 2^-22 + (4a + C + 8)·2^-24,
with y the exact convolution of the inputs as given, g_c and d_c the filter and input patch of channel
c and (4a + C + 8)·2^-24 the float32 transforms and sums. Φ is a worst case (50–1000 times |y| on
random data): the rounding errors of the C·a² terms mostly cancel. On random data ‖ŷ − y‖ / ‖y‖ is
4.5–6e-4 (F(2×2)) and 2–4e-3 (F(4×4)). TF32_TYPICAL_ERROR holds about twice these figures: what
`gpuconv bench` checks TF32 Winograd against, a ceiling for random data, not a guarantee.
tests/test_winograd_half.py checks the bound, and the result against the same algorithm on TF32-rounded
U and V (only float32 arithmetic left: within 2^-14 for F(2×2), 2^-11 for F(4×4)).
"""

from __future__ import annotations

import functools

import numpy as np

from gpuconv.kernels import _common
from gpuconv.kernels import gemm as kgemm
from gpuconv.kernels import gemm_tc as kgemm_tc
from gpuconv.kernels import winograd as kwino

from . import _interop, _precision

ALGOS = {"winograd": 4, "winograd_2x2": 2}
# ‖ŷ − y‖ / ‖y‖ from TF32 products on random data, per tile size m: about twice the measured figures
# (module docstring); a ceiling for such data, not a guarantee (the guarantee is componentwise)
TF32_TYPICAL_ERROR = {2: 2.0 ** -10, 4: 2.0 ** -7}
# Tiles in one chunk, at most: the transforms' int32 tile index, with a block's headroom.
MAX_CHUNK_TILES = _common.INT32_MAX - 1024


def ineligible(g) -> str | None:
    """Why Winograd cannot run geometry g (None if it can)."""
    if (g.R, g.S) != (3, 3):
        return f"a 3×3 kernel (got {g.R}×{g.S})"
    if g.stride != (1, 1) or g.dilation != (1, 1):
        return f"stride 1 and dilation 1 (got stride {g.stride}, dilation {g.dilation})"
    if g.groups != 1:
        return f"groups=1 (got {g.groups})"
    return None


def workspace_dtype(dtype):
    """The dtype of the workspace (U, V, M, the flag): float32 for 16-bit data, else the data's."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype in _precision.HALF_DTYPES else dtype


class WinogradPlan:
    """One (shape, dtype, tile size, options, limit); tc: a tensor-core kind (_precision.tc_kind) or None.
    The products run on TF32 tensor cores for float32 with TF32 allowed (tc "tf32"), else on the
    CUDA-core GEMM in the workspace's dtype (float32 for float16 / bfloat16: see the module docstring)."""

    @staticmethod
    def workspace_images(g, dtype, m, limit) -> int:
        """Images per chunk under the workspace limit; ValueError if g is ineligible or one image won't fit."""
        why = ineligible(g)
        if why:
            raise ValueError(f"algo='winograd' needs {why}")
        a2, isz = (m + 2) ** 2, workspace_dtype(dtype).itemsize
        tiles = (-(-g.P // m)) * (-(-g.Q // m))
        if tiles > MAX_CHUNK_TILES:
            raise ValueError(f"algo='winograd' needs fewer than 2**31 tiles per image (output {g.P}×{g.Q}: {tiles}); "
                             "use another algo")
        per_image = a2 * (g.C + g.K) * tiles * isz
        room = limit - a2 * g.K * g.C * isz - isz          # U, and the non-finite flag
        if room < per_image:
            raise ValueError(f"the Winograd workspace for one image ({per_image + a2 * g.K * g.C * isz} B) exceeds the "
                             f"workspace limit ({limit} B); raise it with gpuconv.set_workspace_limit or use another algo")
        # the transforms index a chunk's tiles in int32 (gpuconv.kernels.winograd): cap the images per chunk
        return min(g.N, room // per_image, MAX_CHUNK_TILES // tiles)

    def __init__(self, g, dtype, m, has_bias, act, alpha, limit, tc=None):
        self.images = self.workspace_images(g, dtype, m, limit)
        self.g, self.dtype, self.m = g, np.dtype(dtype), m
        self.ws_dtype = workspace_dtype(dtype)
        self.tc = "tf32" if tc == "tf32" and self.dtype == np.float32 else None
        self.a2 = (m + 2) ** 2
        self.TH, self.TW = -(-g.P // m), -(-g.Q // m)
        t, _, l, _ = g.pads            # the output transform applies bias and any activation itself
        self.filters, self.inputs, self.outputs = kwino.launch_transforms(
            _precision.kernel_dtype(dtype), m, (t, l), _common.PAD_CODES[g.padding_mode], self.TH, self.TW,
            has_bias, act, alpha)
        self._gemms = {}

    def _gemm(self, nb):
        """M[e] = U[e] (K×C, C contiguous) @ V[e] (C×tiles, tiles contiguous) for the a² e of a chunk of nb images."""
        if nb not in self._gemms:
            args = ("matrix", self.g.K, nb * self.TH * self.TW, self.g.C, self.a2, True, True)
            if self.tc:
                self._gemms[nb] = kgemm_tc.launch_gemm_tc(self.tc, *args)
            else:
                self._gemms[nb] = kgemm.launch_gemm(self.ws_dtype, *args)
        return self._gemms[nb]

    def run(self, dx, dw, db, dy, kind, like, s):
        g, isz, a2 = self.g, self.ws_dtype.itemsize, self.a2
        tiles = self.TH * self.TW
        n_ws = a2 * g.K * g.C + self.images * a2 * (g.C + g.K) * tiles
        _, buf = _interop.allocate((n_ws + 1,), self.ws_dtype, kind, like, s)
        U = _interop.dense_view(buf, (a2, g.K, g.C))
        flag = _interop.dense_view(buf[n_ws:], (1,))     # raised by a non-finite tile (last: U stays aligned)
        self.filters(dw, U, s)
        off = a2 * g.K * g.C * isz
        for img0 in range(0, g.N, self.images):
            nb = min(self.images, g.N - img0)
            T = nb * tiles
            V = _interop.dense_view(buf[off // isz:], (a2, g.C, T))
            M = _interop.dense_view(buf[(off // isz) + a2 * g.C * T:], (a2, g.K, T))
            self.inputs(dx, V, flag, img0, s)
            self._gemm(nb)(U, V, M, flag, 0, 0, s)          # (no bias: the flag fills the unused slot)
            self.outputs(M, dy, db, dx, dw, flag, img0, s)


@functools.lru_cache(maxsize=1024)
def plan(g, dtype, m, has_bias, act, alpha, limit, tc=None):
    return WinogradPlan(g, dtype, m, has_bias, act, alpha, limit, tc)
