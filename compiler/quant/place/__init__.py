"""tcc.quant.place"""
