"""Runs one engine on one model inside the AArch64 sysroot, under qemu: the program whose blocks are counted.

    python3.11 guest.py ENGINE MODEL INPUT.npy OUTPUT.npy RUNS

ENGINE: ``ort`` (ONNX Runtime, CPU provider), ``litert-xnnpack`` (LiteRT with its default XNNPACK delegate) or
``litert-builtin`` (LiteRT's builtin kernels, ruy). One thread, batch as given: one inference to warm up, then a mark,
RUNS inferences, a mark (a mark is a write to file descriptor -1, which the counting plugin sees and which fails
with nothing done); the last inference's first output is saved. It imports only what the sysroot holds (numpy,
onnxruntime, ai-edge-litert), never tcc.
"""

import os
import sys

import numpy as np


def mark() -> None:
    try:
        os.write(-1, b"tcc")
    except OSError:
        pass


def main(engine: str, model: str, inp: str, out: str, runs: int) -> None:
    x = np.load(inp)
    if engine == "ort":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        result = session.run(None, feed)[0]
        mark()
        for _ in range(runs):
            result = session.run(None, feed)[0]
        mark()
    else:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = (
            OpResolverType.AUTO if engine == "litert-xnnpack" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        interpreter = Interpreter(model_path=model, num_threads=1, experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        mark()
        for _ in range(runs):
            interpreter.invoke()
        mark()
        result = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.save(out, result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
