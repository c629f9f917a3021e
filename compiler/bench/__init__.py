"""`tcc bench`: latency of every engine, calibration time and memory, INT8 quality against ONNX Runtime's
quantizer, build time by phase, artifact sizes and executed ARM instructions, in one run (tcc.bench.run), judged
against the speed targets (tcc.bench.targets), written as bench.json and bench.md (tcc.bench.markdown)."""
from .markdown import to_markdown
from .run import BenchConfig, BenchModel, default_models, quick_config, run_bench

__all__ = ["BenchConfig", "BenchModel", "default_models", "quick_config", "run_bench", "to_markdown"]
