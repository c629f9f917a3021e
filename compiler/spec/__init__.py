"""The spec language: positioned YAML/JSON loading, schema check, expressions, block expansion."""
