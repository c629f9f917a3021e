"""tcc.backends.tvm"""
