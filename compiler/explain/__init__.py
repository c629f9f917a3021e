"""`tcc explain`: Grad-CAM heat maps and t-SNE plots of a model's features."""
