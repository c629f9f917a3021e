"""tcc.backends.tvm.measure"""
