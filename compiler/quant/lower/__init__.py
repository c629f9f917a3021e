"""tcc.quant.lower"""
