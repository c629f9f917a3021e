"""tcc.quant.report"""
