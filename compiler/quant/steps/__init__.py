"""tcc.quant.steps"""
