"""Chunk plans for sliding-window operations on chunked arrays (gpuconv.dask): integer arithmetic only.

One spatial axis (H or W) of a convolution or pooling: input size n, padding before the image pad_lo,
effective kernel size eff = dilation·(k − 1) + 1, stride s, n_out outputs. Output o reads the image
rows [o·s − pad_lo, o·s − pad_lo + eff) (rows outside [0, n) are padding).

The plan cuts the image at rows c where a window starts, (c + pad_lo) % s == 0, so every block owns
whole outputs and strided outputs stitch exactly: block i owns the outputs whose windows start in
[c_i, c_{i+1}) (the first block also those starting in the padding before the image, the last block
every output from its first on). To compute them a block also reads `after` = max(eff − s, 0) rows of
its successor (the halo), and, for pooling, `before` rows of its predecessor (below).

Convolutions give each block the padding only where it touches the image border (gpu_conv2d takes
(top, bottom, left, right) padding), so a block's call yields exactly the outputs it owns. Pooling
takes one padding for both sides, so every block is padded on both; `before` = (−pad_lo) mod s rows
of halo put the block's window grid on the image's, and the first `skip` = (before + pad_lo) / s
outputs of every block but the first read that padding inside the image and are dropped (as are
those past the block's owned ones at its end).

Cuts come from the caller's chunk edges, each moved to the first window start at or after it; a cut
that would leave a chunk smaller than the halo, or a last block without an output, is dropped (its
chunk merges with the next). So any chunking works: chunks smaller than the halo are merged.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AxisPlan:
    chunks: tuple[int, ...]        # input chunk sizes along the axis (they sum to n)
    out_chunks: tuple[int, ...]    # outputs each block owns (they sum to n_out)
    depth: tuple[int, int]         # halo rows read from the (previous, next) chunk
    skip: int                      # outputs to drop from the front of every block but the first


def plan_axis(chunks, n: int, pad_lo: int, eff: int, stride: int, n_out: int, both_sides_padded: bool) -> AxisPlan:
    """The plan for one axis; `chunks` are the caller's chunk sizes along it (summing to n).

    both_sides_padded: every block's call pads both of its ends (pooling), not just image borders."""
    if sum(chunks) != n or n_out < 1:
        raise ValueError(f"chunks {tuple(chunks)} must sum to the axis size {n} and give outputs ({n_out})")
    before = (-pad_lo) % stride if both_sides_padded else 0
    after = max(eff - stride, 0)
    need = max(before, after, 1)
    last_cut = min((n_out - 1) * stride - pad_lo, n - need)  # the last block owns an output and holds a halo
    cuts, edge = [], 0
    for size in chunks[:-1]:
        edge += size
        cut = -(-(edge + pad_lo) // stride) * stride - pad_lo   # first window start at or after the edge
        if cut > last_cut:
            break
        if cut - (cuts[-1] if cuts else 0) >= need:
            cuts.append(cut)
    if not cuts:   # one block: nothing to overlap
        return AxisPlan((n,), (n_out,), (0, 0), 0)
    starts = [0] + [(c + pad_lo) // stride for c in cuts] + [n_out]
    bounds = [0] + cuts + [n]
    return AxisPlan(tuple(b - a for a, b in zip(bounds, bounds[1:])),
                    tuple(b - a for a, b in zip(starts, starts[1:])),
                    (before, after), (before + pad_lo) // stride if both_sides_padded else 0)
