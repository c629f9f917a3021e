"""The TVM backend: modules compiled for the host and ARM, their kits, runtime and measurements."""
