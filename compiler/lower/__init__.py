"""tcc.lower"""
