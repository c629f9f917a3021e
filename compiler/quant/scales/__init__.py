"""tcc.quant.scales"""
