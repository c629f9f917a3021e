"""tcc.backends.ort"""
