"""The calibration table as data: the file, the target rules, the steps' records, weight codes, the placement and
the quantizer of equation (8)."""
