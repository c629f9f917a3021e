"""The model specs shipped with tcc (*.yaml, baselines/*.yaml) and the JSON schemas (schema/*.json): package
data, found through tcc.resources."""
