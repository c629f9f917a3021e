"""`tcc qat`: quantization-aware fine-tuning from a calibration table, distilled from the model's own FP32 logits on
unlabelled images; writes the weights and the table for them (`tcc build --weights W --calib T`)."""

from __future__ import annotations

import argparse
import sys

from ..errors import DataError
from .args import load_model, max_pixels_arg, print_notes, spec_args, weights_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qat", help="quantization-aware fine-tuning from a calibration table (distilled, no labels)")
    spec_args(p)
    weights_args(p)
    p.add_argument(
        "--calib",
        required=True,
        metavar="TABLE",
        help="the calibration table (tcc calibrate) whose integer graph the training fake-quantizes",
    )
    p.add_argument(
        "--data",
        required=True,
        help="unlabelled training images (folder, recursive) or .npy/.npz of NCHW float32, e.g. the calibration crops",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="folder for weights.pt, calib.json and log.json"
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument(
        "--lr",
        type=float,
        default=0.01,
        help="Adam's step for the conv / linear layers in codes (of the weight's channel, of the bias's "
        "output), cosine-annealed (default 0.01)",
    )
    p.add_argument(
        "--bias-lr",
        type=float,
        default=0.01,
        help="the same for the folded biases, in steps of the layer's output (default 0.01; 0 freezes)",
    )
    p.add_argument(
        "--scale-lr",
        type=float,
        default=0.01,
        help="Adam's step for the log of each activation scale (LSQ; default 0.01; 0 keeps the table's)",
    )
    p.add_argument(
        "--feature-weight",
        type=float,
        default=3.0,
        help="weight of every quantized tensor's relative error against the FP32 model's, beside the "
        "logits' (default 3; 0: logits only)",
    )
    p.add_argument(
        "--label-weight",
        type=float,
        default=0.0,
        help="with DATA/<class>/image folders: the weight of the cross-entropy against the labels beside "
        "the distillation (default 0: no labels needed)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--augment",
        default="dihedral",
        choices=["none", "flip", "dihedral", "crops"],
        help="views of each image per epoch (default dihedral: quarter turns and flips, square inputs; "
        "crops: also a random square of 50-100%% of the side, scaled back up)",
    )
    p.add_argument("--calib-size", type=int, help="samples picked (seeded) from the data (default: all)")
    p.add_argument(
        "--eval",
        metavar="DIR",
        help="held-out images (folder, recursive) or .npy/.npz: the INT8 model before and after, judged on them "
        "against the given FP32 model (output cosine, top-1, a dense output's pixels and Dice)",
    )
    p.add_argument("--opset", type=int, default=13, help="ONNX opset the table was calibrated at (default 13)")
    p.add_argument("--skip-bad", action="store_true", help="warn about unreadable images instead of failing")
    p.add_argument("--force", action="store_true", help="write into an existing, non-empty output folder")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="training processes on this machine (torchrun, gloo; each takes its share of every batch)",
    )
    max_pixels_arg(p)
    p.set_defaults(func=run)


# every option a process started by torchrun needs, as the command line gives it back
FORWARDED = (
    "weights",
    "by_order",
    "key_map",
    "seed",
    "calib",
    "data",
    "output",
    "epochs",
    "lr",
    "bias_lr",
    "scale_lr",
    "feature_weight",
    "label_weight",
    "batch_size",
    "augment",
    "calib_size",
    "eval",
    "opset",
    "skip_bad",
    "force",
    "max_pixels",
)


def run(args) -> int:
    from ..train.distributed import launch, main_process, under_torchrun  # deferred for start-up: loads torch

    if args.nproc < 1:
        raise DataError(f"--nproc {args.nproc}: at least 1")
    model = load_model(args)
    options = dict(
        epochs=args.epochs,
        lr=args.lr,
        bias_lr=args.bias_lr,
        scale_lr=args.scale_lr,
        feature_weight=args.feature_weight,
        label_weight=args.label_weight,
        batch_size=args.batch_size,
        augment=args.augment,
        calib_size=args.calib_size,
        held_out=args.eval,
        opset=args.opset,
        skip_bad=args.skip_bad,
        force=args.force,
    )
    if args.nproc > 1 and not under_torchrun():  # a mistake says so once, before torchrun starts the processes
        model.qat(args.data, args.calib, args.output, check_only=True, **options)
        return launch(args.nproc, _argv(args), command="qat")
    if main_process():
        print_notes(model)
    result = model.qat(args.data, args.calib, args.output, log=lambda msg: print(msg, file=sys.stderr), **options)
    if not main_process():
        return 0
    print(f"wrote {result.weights} and {result.weights.parent / 'calib.json'}")
    spec = result.weights.parent / model.loaded.path.name if model.source else args.spec  # an ONNX file's import
    print(
        f"build it: tcc build {spec} --weights {result.weights} --calib {result.weights.parent / 'calib.json'} "
        "--precision int8 --target TARGET"
    )
    return 0


def _argv(args) -> list[str]:
    argv = [str(args.spec)] + [a for kv in args.overrides for a in ("--set", kv)]
    for name in FORWARDED:
        value, flag = getattr(args, name), "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not None and value is not False:
            argv += [flag, str(value)]
    return argv
