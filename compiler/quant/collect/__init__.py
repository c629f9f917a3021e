"""tcc.quant.collect"""
