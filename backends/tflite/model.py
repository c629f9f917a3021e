""".tflite files written directly with LiteRT's flatbuffer object API (`ai_edge_litert.schema_py_generated`), no
TensorFlow: tensors, constant buffers, operators, and each builtin operator's version as TFLite's own rules
(tensorflow/lite/tools/versioning/op_version.cc) give it for the types the operator runs on.

    m = TfliteModel("ddsnet int8")
    x = m.tensor("input", [1, 224, 224, 3], "float32")
    w = m.tensor("conv.weight", w.shape, "int8", data=w, quant=Quant(scales, zps, axis=0))
    m.operator("CONV_2D", [x, w, b], [y], Conv2DOptions(...))
    data = m.to_bytes(inputs=[x], outputs=[y])          # the same inputs give the same bytes
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

DTYPES = {
    "float32": "FLOAT32",
    "float16": "FLOAT16",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
}
SIGNATURE = "serving_default"


@dataclass(frozen=True)
class Quant:
    """A tensor's quantization: real = (code - zero_point) * scale; per channel along `axis` when several."""

    scale: tuple
    zero_point: tuple
    axis: int = 0


def schema():
    from ai_edge_litert import schema_py_generated  # deferred: ai-edge-litert is optional (and loads slowly)

    return schema_py_generated


def options(name: str, **fields):
    """A builtin options object of the schema, e.g. options("Conv2DOptions", padding="SAME", strideH=2)."""
    s = schema()
    obj = getattr(s, f"{name}T")()
    for key, value in fields.items():
        if key == "padding":
            value = getattr(s.Padding, value)
        elif key == "fusedActivationFunction":
            value = getattr(s.ActivationFunctionType, value)
        if not hasattr(obj, key):
            raise AttributeError(f"{name} has no field {key!r}")
        setattr(obj, key, value)
    return name, obj


class _OperandTypes(NamedTuple):
    """The element types an operator's version depends on: its first input's, its weights' (second input), its
    first output's (None where the input is absent)."""

    i0: str | None
    w: str | None
    o0: str


class TfliteModel:
    def __init__(self, description: str):
        s = schema()
        self.s = s
        self.model = s.ModelT()
        self.model.version = 3
        self.model.description = description
        self.model.buffers = [s.BufferT()]  # buffer 0: the empty buffer of every non-constant tensor
        self.tensors: list = []
        self.operators: list[tuple[str, list[int], list[int], tuple[str, Any] | None]] = []
        self.names: dict[str, int] = {}

    # ------------------------------------------------------------------------------------------ tensors
    def tensor(
        self,
        name: str,
        shape,
        dtype: str,
        data: np.ndarray | None = None,
        quant: Quant | None = None,
        signature: list | None = None,
    ) -> int:
        """A new tensor (a unique name is made from `name`); `data` makes it a constant."""
        s = self.s
        t = s.TensorT()
        base, k = name, 1
        while name in self.names:
            k += 1
            name = f"{base}:{k}"
        t.name = name
        t.shape = [int(d) for d in shape]
        if signature is not None:
            t.shapeSignature = [int(d) for d in signature]
        t.type = getattr(s.TensorType, DTYPES[dtype])
        t.buffer = 0
        if data is not None:
            arr = np.array(data, dtype=np.dtype(dtype), order="C")  # (ascontiguousarray makes a scalar 1-D)
            if list(arr.shape) != t.shape:
                raise ValueError(f"tensor {name}: data shape {arr.shape} != {t.shape}")
            b = s.BufferT()
            b.data = np.frombuffer(arr.tobytes(), np.uint8)
            self.model.buffers.append(b)
            t.buffer = len(self.model.buffers) - 1
        if quant is not None:
            q = s.QuantizationParametersT()
            q.scale = [float(np.float32(v)) for v in quant.scale]
            q.zeroPoint = [int(v) for v in quant.zero_point]
            q.quantizedDimension = int(quant.axis)
            t.quantization = q
        self.tensors.append(t)
        self.names[name] = len(self.tensors) - 1
        return len(self.tensors) - 1

    def dtype(self, index: int) -> str:
        s = self.s
        names = {getattr(s.TensorType, v): k for k, v in DTYPES.items()}
        return names[self.tensors[index].type]

    def shape(self, index: int) -> list[int]:
        return list(self.tensors[index].shape)

    def per_channel(self, index: int) -> bool:
        q = self.tensors[index].quantization
        return q is not None and q.scale is not None and len(q.scale) > 1

    # ------------------------------------------------------------------------------------------ operators
    def operator(self, op: str, inputs: list[int], outputs: list[int], opts: tuple[str, Any] | None = None) -> None:
        self.operators.append((op, list(inputs), list(outputs), opts))

    def version(self, op: str, inputs: list[int], outputs: list[int], opts) -> int:
        """The builtin version TFLite's versioning rules give this operator (op_version.cc), for the cases tcc
        writes: the int16 rules first, then the weighted ops', then the others'."""
        t = _OperandTypes(
            self.dtype(inputs[0]) if inputs and inputs[0] >= 0 else None,
            self.dtype(inputs[1]) if len(inputs) > 1 and inputs[1] >= 0 else None,
            self.dtype(outputs[0]),
        )
        for rule in (self._int16_version, self._weighted_version):
            v = rule(op, inputs, opts, t)
            if v is not None:
                return v
        return self._other_version(op, inputs, outputs, t)

    def _int16_version(self, op: str, inputs: list[int], opts, t: _OperandTypes) -> int | None:
        i0, w, o0 = t
        o = opts[1] if opts else None
        # 16x8: int16 activations, int8 weights. op_version.cc's int16 rules as written there: CONV_2D and
        # FULLY_CONNECTED are versions 8 and 11 through `quantized_bias_type` (their int16 x int16 rules never match
        # an int8 filter, DEPTHWISE_CONV_2D's neither: it keeps 1 / 2), the pools, CONCATENATION, PAD, DEQUANTIZE 3,
        # QUANTIZE to int16 2, TRANSPOSE 5, MAXIMUM / MINIMUM 4, LOGISTIC / BATCH_MATMUL / ADD (general scales) 3,
        # MUL 4, SLICE 4, STRIDED_SLICE 1 (no int16 rule)
        if (
            op == "CONV_2D"
            and i0 == "int16"
            and w == "int8"
            and o0 == "int16"
            and o is not None
            and o.quantizedBiasType
        ):
            return 8
        if (
            op == "FULLY_CONNECTED"
            and i0 == "int16"
            and w == "int8"
            and o0 == "int16"
            and o is not None
            and o.quantizedBiasType
        ):
            return 11
        if i0 == "int16":
            wide = {
                "MAX_POOL_2D": 3,
                "AVERAGE_POOL_2D": 3,
                "CONCATENATION": 3,
                "PAD": 3,
                "PADV2": 3,
                "DEQUANTIZE": 3,
                "TRANSPOSE": 5,
                "MAXIMUM": 4,
                "MINIMUM": 4,
                "MEAN": 3,
                "RELU": 3,
                "RELU6": 3,
                "LOGISTIC": 3,
                "BATCH_MATMUL": 3,
                "MUL": 4,
                "SLICE": 4,
                "SOFTMAX": 3,
            }
            if op == "ADD" and o0 == "int16" and opts is not None and not opts[1].potScaleInt16:
                return 3
            rank = len(self.shape(inputs[0]))
            if op == "TRANSPOSE" and rank > 5:
                return 6
            if op in wide and (rank <= 4 or op not in ("PAD", "PADV2", "SLICE")):
                return wide[op]
        if op == "QUANTIZE" and o0 == "int16":
            return 2
        return None

    def _weighted_version(self, op: str, inputs: list[int], opts, t: _OperandTypes) -> int | None:
        i0, w, o0 = t
        if op == "CONV_2D":
            if self.shape(inputs[0])[-1] != self.shape(inputs[1])[-1]:  # grouped: filter depth < input depth
                return 6
            if i0 == "int8" and w == "int8" and o0 == "int8":
                return 3
            if i0 == "float32" and w == "int8":  # hybrid
                return 5 if self.per_channel(inputs[1]) else 2
            return 1
        if op == "DEPTHWISE_CONV_2D":
            if i0 == "float32" and w == "int8":
                return 6 if self.per_channel(inputs[1]) else 4
            if i0 == "int8" and w == "int8" and o0 == "int8":
                return 3
            o = opts[1] if opts else None
            return 2 if o is not None and (o.dilationHFactor != 1 or o.dilationWFactor != 1) else 1
        if op == "FULLY_CONNECTED":
            if len(inputs) == 2 or (len(inputs) > 2 and inputs[2] < 0):
                return 6
            o = opts[1] if opts else None
            if o is not None and o.keepNumDims:
                return 5
            if i0 == "int8" and w == "int8" and o0 == "int8":
                return 4
            if i0 == "float32" and w == "int8":
                return 9 if o is not None and o.asymmetricQuantizeInputs else 3
            return 1
        return None

    def _other_version(self, op: str, inputs: list[int], outputs: list[int], t: _OperandTypes) -> int:
        i0 = t.i0
        if op == "MUL":
            if i0 == "int8":
                q = [self.tensors[k].quantization for k in (*inputs[:2], outputs[0])]
                if all(x is not None and x.scale for x in q) and q[0].scale[0] * q[1].scale[0] / q[2].scale[0] >= 1:
                    return 3
                return 2
            return 1
        if op == "TRANSPOSE":
            rank = len(self.shape(inputs[0]))
            return 6 if rank > 5 else 4 if rank > 4 else 2 if i0 == "int8" else 1
        if op in ("PAD", "PADV2"):
            return 4 if len(self.shape(inputs[0])) > 4 else 2 if i0 == "int8" else 1
        if op == "DEQUANTIZE":
            if i0 == "float16":
                return 3
            if i0 == "int8":
                return 5 if self.per_channel(inputs[0]) else 2
            return 1
        if op == "BATCH_MATMUL":
            return 2 if i0 == "int8" else 1
        if op == "STRIDED_SLICE":
            return 4 if len(self.shape(inputs[0])) > 4 else 2 if i0 == "int8" else 1
        if op in ("MAXIMUM", "MINIMUM") and len(self.shape(inputs[0])) > 4:
            return 3
        if op in (
            "ADD",
            "MAX_POOL_2D",
            "AVERAGE_POOL_2D",
            "CONCATENATION",
            "SOFTMAX",
            "MEAN",
            "RELU6",
            "RELU",
            "LOGISTIC",
            "TANH",
            "SPLIT_V",
            "MAXIMUM",
            "MINIMUM",
            "GELU",
            "SUB",
            "RSQRT",
        ):
            return 2 if i0 == "int8" else 1
        return 1  # RESHAPE, QUANTIZE (int8), HARD_SWISH, RELU_N1_TO_1, RELU_0_TO_1, ELU, LEAKY_RELU, PRELU

    # ------------------------------------------------------------------------------------------ serialization
    def to_bytes(self, inputs: list[int], outputs: list[int]) -> bytes:
        import flatbuffers  # deferred: comes with the optional ai-edge-litert

        s = self.s
        versions: dict[str, int] = {}
        for op, ins, outs, opts in self.operators:  # one operator code per builtin, at the highest version needed
            versions[op] = max(versions.get(op, 1), self.version(op, ins, outs, opts))
        codes = list(versions)
        self.model.operatorCodes = []
        for op in codes:
            oc = s.OperatorCodeT()
            code = getattr(s.BuiltinOperator, op)
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)  # PLACEHOLDER_FOR_GREATER_OP_CODES beyond 127
            oc.version = versions[op]
            self.model.operatorCodes.append(oc)
        sg = s.SubGraphT()
        sg.name = "main"
        sg.tensors = self.tensors
        sg.inputs, sg.outputs = list(inputs), list(outputs)
        sg.operators = []
        for op, ins, outs, opts in self.operators:
            o = s.OperatorT()
            o.opcodeIndex = codes.index(op)
            o.inputs, o.outputs = ins, outs
            if opts is not None:
                name, obj = opts
                o.builtinOptionsType = getattr(s.BuiltinOptions, name)
                o.builtinOptions = obj
            sg.operators.append(o)
        self.model.subgraphs = [sg]
        sig = s.SignatureDefT()
        sig.signatureKey = SIGNATURE
        sig.subgraphIndex = 0
        sig.inputs = [self._tensor_map(i) for i in inputs]
        sig.outputs = [self._tensor_map(i) for i in outputs]
        self.model.signatureDefs = [sig]
        builder = flatbuffers.Builder(1024)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    def _tensor_map(self, index: int):
        m = self.s.TensorMapT()
        m.name = self.tensors[index].name
        m.tensorIndex = index
        return m
