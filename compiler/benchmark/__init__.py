"""`tcc bench`: latency of every engine, calibration time and memory, INT8 quality against ONNX Runtime's
quantizer, build time by phase, artifact sizes and executed ARM instructions, in one run (tcc.benchmark.bench), judged
against the speed targets (tcc.benchmark.targets), written as bench.json and bench.md (tcc.benchmark.markdown)."""

from .bench import BenchConfig, BenchModel, default_models, quick_config, run_bench
from .markdown import to_markdown

__all__ = ["BenchConfig", "BenchModel", "default_models", "quick_config", "run_bench", "to_markdown"]
