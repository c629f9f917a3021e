"""Small kernels for the tests of tcc's TIR rewrites after vectorization (backends/tvm/int8/tir_pipeline.py: the
x86 lane pairs, ARM's register split) and the targets they are compiled for (compiled, not run)."""

from __future__ import annotations

from tcc.backends.tvm.int8.requantize import requantize_neon_tie_free_primfunc

ICELAKE = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "icelake-server"}
HASWELL = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}


def lrint_requantize(n: int, lanes: int):
    """out[i] = lrint(double(acc[i]) * m[i]) vectorized by `lanes`: the float64 form's expression on its own."""
    from tvm import s_tir, te, tirx

    acc = te.placeholder((n,), "int32", name="acc")
    m = te.placeholder((n,), "float64", name="m")
    out = te.compute(
        (n,),
        lambda i: tirx.call_llvm_pure_intrin("int32", "llvm.lrint", acc[i].astype("float64") * m[i]),
        name="requantize",
    )
    sch = s_tir.Schedule(te.create_prim_func([acc, m, out]).with_attr("global_symbol", "main"))
    (i,) = sch.get_loops(sch.get_sblock("requantize"))
    sch.vectorize(sch.split(i, [None, lanes])[1])
    return sch.mod


AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55", "mattr": ["+neon", "+dotprod"]}


def neon_epilogue(n: int, lanes: int, zp: int = 3, dtype: str = "uint8"):
    """The tie-free NEON requantization of [1, n] accumulators to `dtype` (per-channel q and shift, the bounds and
    zero point uniform, as tcc's kernels take it), vectorized by `lanes`."""
    from tvm import s_tir

    func = requantize_neon_tie_free_primfunc(dtype, [1, n], {2: -zp, 3: 255 - zp, 4: zp}, arch="aarch64")
    sch = s_tir.Schedule(func.with_attr("global_symbol", "main"))
    _, i = sch.get_loops(sch.get_sblock("requantize"))
    sch.vectorize(sch.split(i, [None, lanes])[1])
    return sch.mod
