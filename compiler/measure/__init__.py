"""Measuring on this machine: the CPU and its ISA flags, ONNX Runtime sessions and their profiler, latency runners
timed in interleaved rounds. Low in the layers, so that calibration (the speed placement) and `tcc bench` measure
alike."""
