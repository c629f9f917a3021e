"""The placement step: which nodes of an INT8 graph stay in float or take 16-bit activations, for accuracy or speed."""
