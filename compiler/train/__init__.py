"""`tcc train`: spec -> trained weights (one process, or many under torchrun with DistributedDataParallel)."""
