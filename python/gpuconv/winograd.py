"""gpu_conv2d(algo="winograd" | "winograd_2x2"): F(4×4, 3×3) or F(2×2, 3×3) on gpuconv.kernels.winograd
and our GEMM, for 3×3 stride-1 dilation-1 ungrouped layers (any padding form and mode).

Workspace per image: a²·(C + K)·tiles elements (V and M), plus a²·K·C for U and one element for the
non-finite flag; images are processed in chunks so it stays under `gpuconv.set_workspace_limit` (and a
chunk's tiles under 2**31).
"""

from __future__ import annotations

import functools

import numpy as np

from gpuconv.kernels import _common
from gpuconv.kernels import gemm as kgemm
from gpuconv.kernels import winograd as kwino

from . import _interop

ALGOS = {"winograd": 4, "winograd_2x2": 2}
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



class WinogradPlan:
    @staticmethod
    def workspace_images(g, dtype, m, limit) -> int:
        """Images per chunk under the workspace limit; ValueError if g is ineligible or one image won't fit."""
        why = ineligible(g)
        if why:
            raise ValueError(f"algo='winograd' needs {why}")
        a2, isz = (m + 2) ** 2, np.dtype(dtype).itemsize
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

    def __init__(self, g, dtype, m, has_bias, act, alpha, limit):
        self.images = self.workspace_images(g, dtype, m, limit)
        self.g, self.dtype, self.m = g, np.dtype(dtype), m
        self.a2 = (m + 2) ** 2
        self.TH, self.TW = -(-g.P // m), -(-g.Q // m)
        t, _, l, _ = g.pads            # the output transform applies bias and any activation itself
        self.filters, self.inputs, self.outputs = kwino.launch_transforms(
            dtype, m, (t, l), _common.PAD_CODES[g.padding_mode], self.TH, self.TW, has_bias, act, alpha)
        self._gemms = {}

    def _gemm(self, nb):
        if nb not in self._gemms:
            self._gemms[nb] = kgemm.launch_gemm(self.dtype, "matrix", self.g.K, nb * self.TH * self.TW, self.g.C,
                                                self.a2, True, True)
        return self._gemms[nb]

    def run(self, dx, dw, db, dy, kind, like, s):
        g, isz, a2 = self.g, self.dtype.itemsize, self.a2
        tiles = self.TH * self.TW
        n_ws = a2 * g.K * g.C + self.images * a2 * (g.C + g.K) * tiles
        _, buf = _interop.allocate((n_ws + 1,), self.dtype, kind, like, s)
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
            self._gemm(nb)(U, V, M, db, 0, 0, s)
            self.outputs(M, dy, db, dx, dw, flag, img0, s)


@functools.lru_cache(maxsize=1024)
def plan(g, dtype, m, has_bias, act, alpha, limit):
    return WinogradPlan(g, dtype, m, has_bias, act, alpha, limit)
