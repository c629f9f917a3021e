"""`tcc train`: spec -> trained weights (one process, or many under torchrun with DistributedDataParallel).

config.py      the options resolved from the spec, a config file and the command line (the option table
               itself is tcc.spec.train_options; the subcommand is tcc.cli.train)
preflight.py   a run planned: spec, data and options checked before anything runs
data.py        class folders, the split, the dataset (augmentation, the spec's preprocessing)
sampling.py    sample order and batches, the same for one process and N
sample_rng.py  randomness keyed by (seed, epoch, sample): augmentation and dropout
modules.py     training-time modules: keyed dropout, BatchNorm over the global batch
precise_bn.py  BatchNorm statistics recomputed before each validation and checkpoint
finetune.py    the classifier head (re-initialised for another class count) and --freeze
losses.py      ce, focal (FastNet eq. 6), attloss (eq. 7)
metrics.py     accuracy, macro precision / recall / F1, confusion matrix
loop.py        the training loop, checkpoints, resume
distributed.py torchrun: process groups, DDP, `--nproc` starting torchrun
rundir.py      the RUN folder's files, each written whole
curves.py      RUN/curves.png
qat/           `tcc qat`: quantization-aware fine-tuning from a calibration table, distilled from the FP32 model
"""
