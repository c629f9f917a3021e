"""`tcc bench`: latency of every engine, calibration time and memory, INT8 quality against ONNX Runtime's
quantizer, build time by phase, artifact sizes and executed ARM instructions, in one run (tcc.benchmark.run), judged
against the speed targets (tcc.benchmark.targets), written as bench.json and bench.md (tcc.benchmark.markdown)."""

from .markdown import to_markdown
from .run import BenchConfig, BenchModel, default_models, quick_config, run_bench

__all__ = ["BenchConfig", "BenchModel", "default_models", "quick_config", "run_bench", "to_markdown"]
