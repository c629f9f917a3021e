"""tcc.quant.table"""
