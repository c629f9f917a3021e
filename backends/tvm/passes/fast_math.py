"""Exponentials that vectorize, for x86 host FP32 modules: Relax passes before legalization.

LLVM lowers a vectorized `exp` on x86 to one libm `expf` call per element. Sigmoid (SiLU, squeeze-excite gates)
and softmax (attention) are made of it: MobileViT-XXS spent 5.2 ms of its 19 ms in one softmax and 2 ms in a conv
whose SiLU called `expf` per output. Here sigmoid(x) becomes 1 / (1 + exp(-x)), and TVM's FastMathTransform then
writes exp, softmax, tanh and erf with its polynomial forms (`topi.fast_exp`, ...), which vectorize. Their error is
a few float32 ulps: within the FP32 rule the build checks (tcc.tolerance). INT8 modules keep exact `exp` (their
float islands are checked within 0 LSB of the integer reference), and ARM modules theirs (their FP32 instruction
counts are the INT8 ratios' reference).
"""

from __future__ import annotations

from tvm import relax

from .relax_rewrite import call_rewrite_pass
from .softmax import rows_softmax


def sigmoid_as_exp():
    """The module pass writing every float32 sigmoid as 1 / (1 + exp(-x))."""

    def rewrite(_mutator, call):
        if getattr(call.ty, "dtype", None) != "float32":
            return None
        one = relax.const(1.0, "float32")
        return relax.op.divide(one, relax.op.add(one, relax.op.exp(relax.op.negative(call.args[0]))))

    return call_rewrite_pass("relax.sigmoid", rewrite, "TccSigmoidAsExp")


def fast_math_passes() -> list:
    """Sigmoid through exp, softmax over the last axis row by row (softmax.py), then TVM's polynomial exp /
    softmax / tanh / erf."""
    return [sigmoid_as_exp(), rows_softmax(), relax.transform.FastMathTransform(), relax.transform.Normalize()]
