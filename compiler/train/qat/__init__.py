"""Quantization-aware training (`tcc qat`): fake quantization placed by the integer graph of a calibration table
(quant_points.py: one method per kind of the integer op table; fake_quant.py: the straight-through and LSQ
gradients), the spec's PyTorch model run with it on its folded layers (model.py), and the distilled fine-tuning that
writes the weights and the table for them (distill.py)."""
