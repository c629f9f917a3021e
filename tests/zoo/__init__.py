"""Tests of the model zoo: the paper models, torchvision baselines, INT8 at test sizes."""
