"""tcc.backends.ax"""
