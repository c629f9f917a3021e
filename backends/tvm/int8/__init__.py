"""tcc.backends.tvm.int8"""
