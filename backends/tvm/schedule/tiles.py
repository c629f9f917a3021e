"""Register tile sizes for the CPU schedules: output channels and pixels per tile from the target's vector
width and register count (tcc.backends.tvm.isa.Simd), AVX-512's float tiles costed in loads per
multiply-add (also what channel_pad weighs padded channel counts by), and the NEON epilogues' vectors.
"""

from __future__ import annotations

from ..isa import Simd, simd_of

INLINE_PADDING_MAX_WORK = 32  # reductions of at most this many steps per output read their padding inline
# x86 heavy float convs (x86_register_tile): weights up to this many bytes stay in L1 across a row of tiles;
# beyond it a weight load (from L2) counts as this many broadcast loads from L1
X86_L1_WEIGHTS = 32 * 1024
X86_L2_LOAD_COST = 4
# ARM INT8 epilogues: vectors of up to 16 int32 lanes (int8/register_split.py splits the NEON requantization's
# calls by register), so that 16 codes narrow with the saturating narrowings (8 and 32 measured:
# docs/notes/aarch64-dot-kernels.md)
NEON_EPILOGUE_LANES = (16, 8, 4)


def largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def channels_per_tile(channels: int, simd: Simd, half_width: bool = True) -> int:
    """Output channels per register tile: two vectors, one, or -- on AVX-512, `half_width` -- one half-width vector
    (a ymm register, 8 lanes: AVX-512VL gives 32 of them) before a ragged width that no vector divides. DDSNet's
    third transition (120 channels) got 30-lane tiles, 7x slower than 8-lane ones (0.73 ms against 0.11 ms, one
    thread, AVX-512 EPYC); narrower ISAs keep their widths (their instruction counts are references)."""
    widths = (2 * simd.lanes, simd.lanes) + ((simd.lanes // 2,) if half_width and simd.lanes >= 16 else ())
    return next((t for t in widths if channels % t == 0), largest_divisor(channels, 2 * simd.lanes))


def streaming_simd(work: int, simd: Simd, floats: bool) -> Simd:
    """The vectors a reduction of `work` steps per output runs in: on AVX-512, a light float reduction (depthwise
    conv, pool) streams a new input vector per tap and output, in half-width (ymm) vectors, whose loads from a
    channel window of a concat buffer split fewer cache lines (DDSNet's depthwise convs: 90 -> 72 us, interleaved,
    AVX-512 EPYC)."""
    return (
        Simd(simd.lanes // 2, simd.registers)
        if work <= INLINE_PADDING_MAX_WORK and simd.lanes >= 16 and floats
        else simd
    )


def pixel_limit(channel_tile: int, simd: Simd) -> int:
    """The most pixels a register tile of `channel_tile` channels takes (its accumulators fit the registers)."""
    return max(1, min(8, simd.accumulators // -(-channel_tile // simd.lanes)))


def float_pixel_tile(channels: int, target) -> int:
    """The pixels of WindowReduction's register tile for a dense float conv of `channels` output channels on
    `target`: a PrimFunc that computes its width rounded up to a multiple of it (and crops, CROP_BLOCK) runs whole
    tiles only. On AVX-512, 8: every tile x86_register_tile can choose (at
    most 8 pixels, the largest divisor of the width under its limit) divides it."""
    simd = simd_of(target)
    return 8 if simd.lanes >= 16 else pixel_limit(channels_per_tile(channels, simd), simd)


def x86_register_tile(channels: int, width: int, work: int, simd: Simd) -> tuple[int, int] | None:
    """(channels, pixels) of a heavy float conv's register tile on AVX-512 (x86_tile_cost's choice), or None where
    no whole vector divides the channels."""
    best = _x86_tiles(channels, width, work, simd)
    return best[1:] if best else None


def x86_tile_cost(channels: int, width: int, work: int, simd: Simd) -> float | None:
    """A heavy float conv's loads per lane of multiply-add on AVX-512 with its best register tile (None: no whole
    vector divides the channels), what channel_pad.py weighs padded channel counts by."""
    best = _x86_tiles(channels, width, work, simd)
    return best[0][0] if best else None


def _x86_tiles(channels: int, width: int, work: int, simd: Simd):
    """((cost, -lanes), channels, pixels) of the best register tile: whole vectors of channels (zmm, ymm or xmm)
    times pixels, at the least cost in loads per lane of multiply-add. Each of the `work` steps broadcasts one
    input per pixel and loads one weight vector per vector of channels: a tile of p pixels x v vectors does p v
    multiply-adds for p + v loads. When the layer's weights outgrow L1 (X86_L1_WEIGHTS), every row of tiles
    streams them from L2 once per tile of pixels whatever the channel tile: a weight load then counts
    X86_L2_LOAD_COST. Pixels divide the width (or, with no divisor near the limit, fill the tile, the last one
    predicated). Measured on DDSNet (AVX-512 EPYC, per kernel): its third transition (120 channels, 240 steps) 7
    pixels x 1 ymm -> 7 x 3 ymm, 112 -> 91 us; the second (112 channels) stays at 7 x 1 zmm: 2 x 7 zmm ran 192 ->
    220 us."""
    weight_cost = 1 if work * channels * 4 <= X86_L1_WEIGHTS else X86_L2_LOAD_COST
    best = None
    for lanes in (simd.lanes, simd.lanes // 2, simd.lanes // 4) if simd.lanes >= 16 else (simd.lanes,):
        for v in range(1, simd.registers):
            limit = min(8, (simd.registers - v - 1) // v)  # the accumulators, v weights and a broadcast input
            if limit < 1:
                break
            if channels % (v * lanes):
                continue
            x = largest_divisor(width, limit)
            # a width with no divisor near the limit: full tiles, the last one predicated, which keeps LLVM from
            # holding the accumulators in registers (about twice the time: FastNet's stem): counted twice
            predicated = 2 * x < limit
            x = limit if predicated else x
            cost = ((x + v * weight_cost) / (x * v * lanes) * (2 if predicated else 1), -lanes)
            if best is None or cost < best[0]:
                best = cost, v * lanes, x
    return best


def neon_epilogue_lanes(channels: int) -> int:
    """The vector width of an ARM INT8 epilogue over `channels` (NEON_EPILOGUE_LANES)."""
    return next(w for w in (*NEON_EPILOGUE_LANES, 1) if channels % w == 0)
