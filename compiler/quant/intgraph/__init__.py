"""tcc.quant.intgraph"""
