"""Winograd in float16 / bfloat16 (native: 16-bit transforms, float32 workspace and products) and, for
float32 with TF32 allowed, its products on TF32 tensor cores, against the float64 reference on the same
inputs rounded to the dtype.

16-bit results are float32 Winograd's rounded once: within the dtype's bound u + K·2^-24 plus float32
Winograd's own error (HALF_EXTRA), and no worse than twice PyTorch's CPU error in the dtype.

The TF32 bound (gpuconv.winograd): TF32 rounds U and V to 11 significant bits, so, componentwise,
|ŷ − y| ≤ u·|y| + ε·Φ with Φ = |Aᵀ| Σ_c (|G||g_c||Gᵀ|) ⊙ (|Bᵀ||d_c||B|) |A| (the patch magnitudes) and
ε = 2^-10 + 2^-22 + (4a + C + 8)·2^-24. It holds everywhere but is loose (Φ is 50–1000 times |y|), so
each case is also held to the same algorithm in float64 on TF32-rounded U and V (winograd_ref): there
only the float32 transforms and sums remain, and the odd U or V element whose float32 value lies across
a TF32 rounding midpoint from its exact one (one product term off by 2^-10; F(4×4)'s filter transform
is not exact in float32: G has 1/6 and 1/24), so ‖ŷ − r‖ / ‖r‖ ≤ u + REF_TOL[m]. A wrong fragment
layout or a missed tile is off by O(1); operands not rounded (the products exact, or truncated as the
tensor cores would read raw float32 bits) by 5e-4 (F(2×2)) to 5e-3 (F(4×4)), 4× REF_TOL or more
(test_tolerances_see_unrounded_operands).

A TF32 call runs a² tensor-core blocks (16 for F(2×2), 36 for F(4×4), about a second each in the
simulator), so C = K = 16 (one mma tile deep and tall) and one or two images of a few tiles.
"""

import ml_dtypes
import numpy as np
import pytest
from numba import cuda

import gpuconv
from conftest import rel_err
from gpuconv import _precision, winograd
from gpuconv import reference as ref
from gpuconv.kernels import winograd as kwino
from test_half import _t, no_worse_than_torch

DTYPES = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16), "tf32": np.dtype(np.float32)}
# ‖ŷ − r‖ / ‖r‖ against the TF32-rounded Winograd r, beyond the result's own rounding u (module docstring);
# measured in the simulator: 8e-8 (F(2×2)), 5e-5 (F(4×4), from a few U elements rounded across a midpoint)
REF_TOL = {2: 2.0 ** -14, 4: 2.0 ** -11}
# float32 Winograd's relative error beyond float32 accumulation (gpuconv.winograd: 1e-7 / 1e-6 measured)
HALF_EXTRA = 2.0 ** -17
_NP_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def tf32(t):
    """float64 values rounded to float32, then to TF32 as the tensor cores' cvt.rna rounds them."""
    return _precision.round_tf32(t.astype(np.float32)).astype(np.float64)


def winograd_ref(x, w, b, m, padding, padding_mode="zeros", operands=tf32, magnitudes=False):
    """F(m×m, 3×3) of float64 x (N, C, H, W) and w (K, C, 3, 3) (+ b) in float64 NumPy, pre-activation,
    with U and V passed through `operands` (None: exact); or (magnitudes=True) Φ, the same with every
    matrix and value replaced by its absolute value."""
    BT, G, AT = kwino.matrices(m)
    if magnitudes:
        BT, G, AT, x, w, b, operands = abs(BT), abs(G), abs(AT), abs(x), abs(w), None, None
    a, p = m + 2, padding
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode=_NP_PAD[padding_mode])
    P, Q = xp.shape[2] - 2, xp.shape[3] - 2
    TH, TW = -(-P // m), -(-Q // m)
    xp = np.pad(xp, ((0, 0), (0, 0), (0, TH * m + 2 - xp.shape[2]), (0, TW * m + 2 - xp.shape[3])))
    d = np.stack([np.stack([xp[:, :, i * m:i * m + a, j * m:j * m + a] for j in range(TW)], 2)
                  for i in range(TH)], 2)                                         # (N, C, TH, TW, a, a)
    U = np.einsum("ir,kcrs,js->kcij", G, w, G)
    V = np.einsum("ir,nchwrs,js->nchwij", BT, d, BT)
    if operands is not None:
        U, V = operands(U), operands(V)
    Y = np.einsum("pi,kcij,nchwij,qj->nkhpwq", AT, U, V, AT).reshape(x.shape[0], w.shape[0], TH * m, TW * m)
    Y = Y[:, :, :P, :Q]
    return Y if b is None else Y + b[None, :, None, None]


def rounded(rng, shape, name):
    """(the array in the precision's dtype, its values as float64). TF32 cases get float32 values of 11
    significant bits, so F(2×2)'s V (sums of 4 inputs) is exact in float32 however the kernel adds, and
    TF32 rounds it as winograd_ref does."""
    h = rng.standard_normal(shape).astype(np.float32).astype(DTYPES[name] if name != "tf32" else np.float16)
    h = h.astype(DTYPES[name])
    return h, h.astype(np.float64)


def bound_excess(y, exact, phi, u, m, C):
    """max of |ŷ − y| − (u·|y| + (1 + u)·ε·Φ + 2^-24) (the stated bound; ≤ 0 where it holds; the 2^-24
    covers float16's subnormal spacing), over the finite outputs of the exact result."""
    eps = 2.0 ** -10 + 2.0 ** -22 + (4 * (m + 2) + C + 8) * 2.0 ** -24
    with np.errstate(invalid="ignore"):
        excess = np.abs(y - exact) - (u * np.abs(exact) + (1 + u) * eps * phi + 2.0 ** -24)
    return float(np.nanmax(np.where(np.isfinite(exact), excess, -np.inf)))


def _refuse(what):
    return lambda *a, **k: (_ for _ in ()).throw(AssertionError(what))


@pytest.fixture
def native(monkeypatch):
    """Forbid the widening route: 16-bit data must be read natively."""
    monkeypatch.setattr(_precision, "widen", _refuse("widened"))


CASES = [   # (precision, algo, x shape, activation, padding mode)
    # partial tiles at the bottom and right (zeros padding only: the halo of a tile past the padded input
    # is the kernel's choice in the other modes, and TF32 rounds V with it; winograd_ref reads zeros)
    ("float16", "winograd_2x2", (1, 16, 6, 7), "relu", "zeros"),
    ("tf32", "winograd", (1, 16, 7, 6), "relu", "zeros"),                # TF32 by set_allow_tf32
    ("bfloat16", "winograd", (1, 16, 8, 4), None, "reflect"),
    ("tf32", "winograd_2x2", (2, 16, 4, 6), "leaky_relu", "replicate"),  # by allow_tf32=; two images' tiles
]


@pytest.mark.parametrize("name, algo, x_shape, act, mode", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_winograd_16bit_and_tf32(rng, native, monkeypatch, name, algo, x_shape, act, mode):
    dt = DTYPES[name]
    if name == "tf32":      # on the tensor cores; 16-bit data: float32 products on the CUDA cores
        monkeypatch.setattr(winograd.kgemm, "launch_gemm", _refuse("CUDA-core GEMM"))
    else:
        monkeypatch.setattr(winograd.kgemm_tc, "launch_gemm_tc", _refuse("tensor cores"))
    m = winograd.ALGOS[algo]
    x, x64 = rounded(rng, x_shape, name)
    w, w64 = rounded(rng, (16, 16, 3, 3), name)
    b, b64 = rounded(rng, (16,), name)
    kw = dict(padding=1, padding_mode=mode, activation=act, algo=algo)
    by_switch = name == "tf32" and m == 4
    old = gpuconv.set_allow_tf32(by_switch)
    try:
        y = gpuconv.gpu_conv2d(x, w, b, **kw, allow_tf32=True if name == "tf32" and not by_switch else None)
    finally:
        gpuconv.set_allow_tf32(old)
    assert y.dtype == dt and y.shape == (x_shape[0], 16, x_shape[2], x_shape[3])
    y = y.astype(np.float64)
    u = _precision.UNIT_ROUNDOFF[name]
    exact = ref.activation(ref.conv2d(x64, w64, b64, padding=1, padding_mode=mode), act)
    assert np.all(np.isfinite(y))
    if name != "tf32":
        err = rel_err(y, exact)
        assert err <= _precision.error_bound(name, 144) + HALF_EXTRA
        no_worse_than_torch(err, lambda torch: _torch_conv(torch, x, w, b, mode, act), exact)
        return
    phi = winograd_ref(x64, w64, b64, m, 1, mode, magnitudes=True)
    assert bound_excess(y, exact, phi, u, m, 16) <= 0
    r = ref.activation(winograd_ref(x64, w64, b64, m, 1, mode), act)
    assert rel_err(y, r) <= u + REF_TOL[m]
    assert 2.0 ** -14 < rel_err(y, exact)          # TF32's operand rounding is there: the tensor cores ran


def _torch_conv(torch, x, w, b, mode, act):
    """PyTorch's CPU convolution of the 16-bit arrays in their dtype (padding 1 in the mode)."""
    F = torch.nn.functional
    xt = F.pad(_t(torch, x), (1, 1, 1, 1), mode="constant" if mode == "zeros" else mode)
    y = F.conv2d(xt, _t(torch, w), _t(torch, b))
    return torch.relu(y) if act == "relu" else (y if act is None else F.leaky_relu(y, 0.01))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")        # the simulator's NumPy scalars warn on Inf/NaN
def test_winograd_16bit_non_finite_strided(rng, native):
    """An Inf in x (float16, F(2×2)): the fix-up pass's 16-bit build puts Inf and NaN where direct
    convolution does; the other outputs keep the bound. x and out are strided device views, so the
    transforms' general (any-stride) 16-bit variants run, and nothing is widened."""
    x, x64 = rounded(rng, (1, 16, 5, 6), "float16")
    x[0, 3, 2, 4] = np.inf
    x64[0, 3, 2, 4] = np.inf
    w, w64 = rounded(rng, (16, 16, 3, 3), "float16")
    b, b64 = rounded(rng, (16,), "float16")
    wide = np.zeros(x.shape[:3] + (2 * x.shape[3],), np.float16)
    wide[..., ::2] = x
    out = cuda.to_device(np.full((1, 16, 5, 12), np.nan, np.float16))[..., ::2]
    got = gpuconv.gpu_conv2d(cuda.to_device(wide)[..., ::2], cuda.to_device(w), cuda.to_device(b), padding=1,
                             algo="winograd_2x2", out=out)
    assert got is out
    got = got.copy_to_host().astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        exact = ref.conv2d(x64, w64, b64, padding=1)
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(got), test(exact), err_msg=f"{test.__name__} placement differs")
    assert (~np.isfinite(exact)).sum() == 16 * 9           # every filter's 3×3 window over the Inf
    finite = np.isfinite(exact)
    assert rel_err(got[finite], exact[finite]) <= _precision.error_bound("float16", 144) + HALF_EXTRA


def test_tf32_off_keeps_the_cuda_core_products(rng, monkeypatch):
    """float32 without TF32 (the default): the products stay on kernels/gemm.py, float32-accurate."""
    monkeypatch.setattr(winograd.kgemm_tc, "launch_gemm_tc",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("tensor cores")))
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    for algo in winograd.ALGOS:
        y = gpuconv.gpu_conv2d(x, w, padding=1, algo=algo, allow_tf32=False)
        assert rel_err(y, ref.conv2d(x.astype(np.float64), w, padding=1)) < 1e-5


def test_tolerances_see_unrounded_operands(rng):
    """REF_TOL is well below the error of operands truncated to TF32 (what the tensor cores would read
    from raw float32 bits, were cvt.rna skipped) and of exact operands (products not rounded at all), on
    the tests' shapes: more than 8× and 4× it for each tile size (measured: 18× and 9× for F(2×2), 10×
    and 5.5× for F(4×4))."""
    def truncated(t):
        return (t.astype(np.float32).view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32).astype(np.float64)

    x = rng.standard_normal((1, 16, 6, 7))
    w = rng.standard_normal((16, 16, 3, 3))
    for m in winograd.ALGOS.values():
        r = winograd_ref(x, w, None, m, 1)
        assert rel_err(winograd_ref(x, w, None, m, 1, operands=truncated), r) > 8 * REF_TOL[m]
        assert rel_err(winograd_ref(x, w, None, m, 1, operands=None), r) > 4 * REF_TOL[m]
