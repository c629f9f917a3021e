"""DDSNet INT8 vs FP32 on ONNX Runtime: accuracy, calibration time, 1-thread latency, model size, nodes left in
float, the issue's targets as PASS / FAIL. `python tools/bench_int8.py --help`; the code is tcc.quant.bench."""
from tcc.quant.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
