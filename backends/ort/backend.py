"""The ONNX Runtime backend: targets `onnx` (portable FP32 ONNX), `ort` (FP32, FP16 with FP32 I/O, INT8 QDQ, dynamic
INT8) and `ort-w8` (INT8 QDQ with 8-bit dense weights, for CPUs whose u8 x s8 kernels do not saturate).

The artifact is one file, `model.onnx`, serialized deterministically (protobuf field order; no timestamps). Its IR
version is lowered to the minimum its opset needs, so older runtimes load it. FP16 conversion: ort/fp16.py; the
sessions: backends/onnx_runtime.py (shared with the AX kits' checks).
"""

from __future__ import annotations

import json
import logging
import platform
import tempfile
from pathlib import Path

import numpy as np

from tcc.errors import BuildError, SelfCheckError
from tcc.measure.machine import cpu_model
from tcc.quant.table.file import load_table
from tcc.quant.table.rules import RULES
from tcc.targets import TARGETS

from ..base import Backend, Capabilities, EmitOptions, Exposed
from ..onnx_runtime import ARTIFACT, PROVIDERS, OrtLoaded, load_bundle, qdq_codes, run_loaded, session_run


class OrtBackend(Backend):
    capabilities = Capabilities(
        name="ort",
        targets=("onnx", "ort", "ort-w8"),
        precisions=("fp32", "fp16", "int8", "dynamic"),
        onnx_ops=None,  # ONNX Runtime implements every standard op; check() still tests each against the opset
        opsets=(11, 21),
        runs_here=True,
        int8_lowering="qdq",  # QuantizeLinear / DequantizeLinear around the tensors of the table (tcc.quant.lower.qdq)
        int8_exact=False,  # ORT requantizes with a float multiplier: within LSBs of the fixed-point reference
    )

    def check(self, model, options: EmitOptions) -> None:
        """Also: 8-bit dense weights (`ort-w8`) are built where ONNX Runtime's u8 x s8 kernels compute them exactly,
        so that the self-check runs the deployment's arithmetic (refused before any calibration elsewhere)."""
        super().check(model, options)
        rules = RULES.get(TARGETS[options.target].rules or "")
        if options.precision == "int8" and rules is not None and not rules.exact_on_ort_here():
            raise BuildError(
                f"target {options.target}: this CPU ({cpu_model()}, {platform.machine()}) has no VNNI, so ONNX "
                "Runtime's u8 x s8 kernels add two products in a saturating int16 here and 8-bit dense weights can "
                "come out wrong: the build's self-check would not run the deployment's arithmetic. Build on an x86 "
                "CPU with AVX-VNNI or AVX-512 VNNI or on ARM64, or use --target ort (7-bit dense weights, exact on "
                "every CPU); nothing was written"
            )

    def emit(self, model, options: EmitOptions, out_dir: Path) -> list[str]:
        import onnx  # deferred for start-up: tcc's CLI loads every backend

        if options.precision == "fp16":
            from .fp16 import to_fp16  # deferred for start-up: loads onnx

            model = to_fp16(model)
        elif options.precision == "int8":
            from tcc.quant.lower.qdq import to_qdq  # deferred for start-up: loads onnx

            if options.table is None:
                raise BuildError("precision int8 needs a calibration table")
            model = to_qdq(model, options.table, compact=True)  # the deployment form: short names, no redundancy
        elif options.precision == "dynamic":
            model = _quantize_dynamic(model)
        elif options.precision != "fp32":
            raise BuildError(f"the ort backend cannot emit precision {options.precision}")
        else:
            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            model = copy
        minimum = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
        model.ir_version = min(model.ir_version, minimum) if model.ir_version else minimum
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise BuildError(f"the ONNX model fails the checker: {str(e).strip().splitlines()[0]}") from None
        (Path(out_dir) / ARTIFACT).write_bytes(model.SerializeToString())
        return [ARTIFACT]

    def load(self, bundle_dir: Path) -> OrtLoaded:
        return load_bundle(bundle_dir)

    def run(self, loaded: OrtLoaded, x: np.ndarray) -> np.ndarray:
        return run_loaded(loaded, x)

    def int8_codes(self, model, options: EmitOptions, bundle_dir: Path, x: np.ndarray, got: np.ndarray) -> dict:
        """The codes ORT's integer kernels compute for every quantized tensor: the same QDQ model with readable
        names (the artifact is its compact form: the same kernels and values) and every QuantizeLinear output as
        an extra graph output. Exposing a QuantizeLinear's output leaves ORT's fusions (QLinearConv, QLinearAdd,
        ...) as they are; that the final output equals the artifact's bit for bit is checked here."""
        from tcc.quant.lower.qdq import to_qdq  # deferred for start-up: loads onnx

        y, codes = qdq_codes(model, to_qdq(model, options.table), options.table, x)
        if not np.array_equal(y, got):
            raise SelfCheckError(
                "self-check: the INT8 model with its codes exposed does not compute what the "
                "artifact computes (ONNX Runtime fused it differently); no bundle was written"
            )
        return codes

    def tensors(self, bundle_dir: Path, x: np.ndarray, model=None) -> dict:
        """FP32 / FP16 / dynamic: every node output of the artifact as an extra graph output (ORT then keeps each
        one; its fusions may differ, values only by float rounding). INT8: the artifact is the compact QDQ form,
        whose tensors have short names; with `model` (the FP32 graph) the readable QDQ model of the bundle's
        table is rebuilt, its final output checked equal to the artifact's, and every quantized tensor exposed
        through its QuantizeLinear (tcc.backends.onnx_runtime.qdq_codes); without it, the final output alone."""
        import onnx  # deferred for start-up: tcc's CLI loads every backend

        bundle = Path(bundle_dir)
        precision = json.loads((bundle / "manifest.json").read_text())["precision"]
        y = self.run(self.load(bundle), x)  # first: a file ONNX Runtime cannot load is a BuildError naming it
        art = onnx.load(str(bundle / ARTIFACT))
        out_name = art.graph.output[0].name
        if precision == "int8":
            if model is None:
                return {out_name: Exposed(y)}
            from tcc.quant.lower.qdq import to_qdq  # deferred for start-up: loads onnx

            table = load_table(bundle / "calibration.json")
            got, codes = qdq_codes(model, to_qdq(model, table), table, x)
            if not np.array_equal(got, y):
                raise BuildError(
                    f"{bundle}: the readable QDQ model of the bundle's table does not compute what the "
                    "artifact computes: the bundle was not built from this spec and weights"
                )
            exposed = {}
            inputs = {i.name for i in model.graph.input}
            for name, q in codes.items():  # (the graph input's codes, which ORT may hold space-to-depth, are x's)
                if name in inputs:
                    continue
                s, zp, _ = table.act_scale(name)
                exposed[name] = Exposed(((q.astype(np.int64) - zp) * np.float32(s)).astype(np.float32), s)
            exposed[out_name] = Exposed(y)
            return exposed
        names = [o for n in art.graph.node for o in n.output if o and o != out_name]
        have = {o.name for o in art.graph.output}
        art.graph.output.extend(onnx.ValueInfoProto(name=o) for o in names if o not in have)
        import onnxruntime as ort  # deferred for start-up: loads ORT's native library

        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(art.SerializeToString(), so, providers=PROVIDERS)
        outs = session_run(sess, None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})
        values = dict(zip([o.name for o in sess.get_outputs()], outs))
        exposed = {
            n: Exposed(np.asarray(values[n], np.float32))
            for n in names
            if n in values and np.issubdtype(np.asarray(values[n]).dtype, np.floating)
        }
        exposed[out_name] = Exposed(np.asarray(y, np.float32))
        return exposed

    def runtime_info(self, options: EmitOptions) -> dict:
        info = {"runtime": "onnxruntime", "providers": PROVIDERS, "artifact": ARTIFACT}
        if options.precision == "int8":
            info["note"] = (
                "QDQ model: int8 per-channel symmetric weights, int32 biases, 8-bit activations with the "
                "scales of calibration.json. ONNX Runtime fuses the QuantizeLinear/DequantizeLinear "
                "pairs into its integer kernels (QLinearConv, QLinearConcat, QGemm, ...) with its "
                "default graph optimisations; with optimisations disabled it runs the same model as "
                "float fake-quant."
            )
        if options.precision == "dynamic":
            info["note"] = (
                "dynamic quantization (onnxruntime.quantization.quantize_dynamic): int8 per-channel "
                "weights, activations quantized per tensor at run time (ConvInteger/MatMulInteger); "
                "no calibration data needed, slower than static INT8."
            )
        if options.precision == "fp16":
            info["note"] = (
                "float16 weights and activations, float32 input/output. ONNX Runtime's CPU provider has "
                "few float16 kernels: it inserts casts and computes most ops in float32 there; CUDA, "
                "DirectML and ARM builds run the float16 kernels."
            )
        return info


def _quantize_dynamic(model):
    """ONNX Runtime's dynamic quantization of an FP32 model (its API works on files)."""
    import onnx  # deferred for start-up: onnx and ORT's quantizer load only for this target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="tcc-dynamic-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "dynamic.onnx"
        src.write_bytes(model.SerializeToString())
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing advice on every call
        try:
            # reduce_range: 7-bit weights. Without VNNI, ORT's u8 x s8 kernels add pairs of products in int16
            # (VPMADDUBSW) and saturate on 8-bit weights (docs/notes/tolerances.md). The artifact must not depend
            # on the build machine's ISA, so always 7 bits.
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
        finally:
            root.setLevel(level)
        return onnx.load(str(dst))
