"""`tcc calibrate`: calibrate INT8 scales (KL coarse, cosine fine) and write a table, with its quality report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import DataError
from ..files import check_replaceable
from ..process.phases import phase
from ..spec.loader import load_spec, parse_overrides
from .args import (
    calibration_request,
    fidelity_args,
    fidelity_floor,
    fidelity_warning,
    load_model,
    max_pixels_arg,
    method_arg,
    percentile_arg,
    placement_args,
    progress_arg,
    quiet_fidelity_warnings,
    spec_args,
    steps_args,
    weights_args,
)
from .progress import PhaseStatus


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="calibrate INT8 scales (KL coarse, cosine fine) and write a table",
        description="calibrate INT8 scales (KL coarse, cosine fine) and write a table, with its quality report",
    )
    spec_args(p)
    p.add_argument("--data", required=True, help="image folder (recursive) or .npy/.npz of NCHW float32")
    p.add_argument(
        "--target",
        default="ort",
        help="target whose quantization rules apply: a rules name or a build target; for ax620 / ax620e / ax650 "
        "the report is also printed as the toolchain's precision table",
    )
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", default="calib.json", help="calibration table (JSON)")
    out.add_argument("--force", action="store_true", help="replace an existing table (and --report files)")
    weights = p.add_argument_group("weights (default: seeded random weights)")
    weights_args(
        weights,
        ("--weights", "--by-order", "--key-map"),
        weights="PyTorch state_dict (.pt/.pth)",
        key_map="YAML/JSON mapping of checkpoint keys to spec names",
    )
    weights_args(weights, ("--seed",), seed=None)
    method = p.add_argument_group("the calibration")
    method_arg(method, "the spec's `calibrate:` method, else auto")
    method.add_argument(
        "--calib-size", type=int, default=128, metavar="N", help="samples picked (seeded) from the data"
    )
    percentile_arg(method)
    method.add_argument("--cos-steps", type=int, default=100, help="scale candidates in [0.5 s, 2 s]")
    method.add_argument("--cos-rounds", type=int, default=2, help="alternating weight/activation rounds")
    method.add_argument("--skip-bad", action="store_true", help="warn about unreadable images instead of failing")
    method.add_argument(
        "--opset",
        type=int,
        default=13,
        help="ONNX opset of the graph calibrated (as `tcc build --opset`; the table fits that build)",
    )
    steps_args(method)
    placement_args(p.add_argument_group("placement: float islands, 16-bit activations"), "")
    report = p.add_argument_group("the quality report and the INT8 fidelity it judges")
    report.add_argument(
        "--report",
        metavar="OUT.json|OUT.png",
        help="also save the quality report: JSON, or a chart (.png, .svg, .pdf) with the worst tensors' "
        "activation histograms beside it (OUT.histograms.png)",
    )
    report.add_argument(
        "--report-samples",
        type=int,
        default=32,
        metavar="N",
        help="samples (seeded subset) the quality report runs on: calibration samples, or --eval's",
    )
    report.add_argument(
        "--eval",
        metavar="DIR",
        help="judge the INT8 model on these held-out images (folder, recursive) or .npy/.npz instead of "
        "on calibration samples; ORT's quantize_static is still calibrated on --data",
    )
    report.add_argument(
        "--no-compare",
        action="store_true",
        help="leave ONNX Runtime's quantize_static (MinMax, Entropy) out of the report (faster: it calibrates and "
        "runs two more models)",
    )
    fidelity_args(report, "the report's samples (calibration samples, or --eval's)")
    max_pixels_arg(report)
    progress_arg(out, "the phase running now: ")
    p.set_defaults(func=run)


def run(args) -> int:
    floor = fidelity_floor(args)  # a floor out of range fails before any work
    with quiet_fidelity_warnings():
        return _run(args, floor)


def _run(args, floor) -> int:
    # deferred for start-up: loads numpy, onnx
    from ..quant.report.fidelity import Fidelity, judge
    from ..quant.report.quality import check_report_path, save_report

    # user mistakes in the outputs and the report options fail now, not after the (long) calibration
    check_replaceable(args.output, args.force)
    if args.report:
        check_report_path(args.report)
        for path in _report_files(Path(args.report)):
            check_replaceable(path, args.force)
    if args.report_samples < 1:
        raise DataError(f"--report-samples must be at least 1, not {args.report_samples}")
    held_out = _held_out(args) if args.eval else None  # read before the (long) calibration: a bad path fails now
    with PhaseStatus("calibrate", args.progress) as status:
        with phase("load"):
            model = load_model(args)
        for note in model.notes:
            status.log(f"note: {note}")
        request = calibration_request(
            args,
            target=args.target,
            cos_steps=args.cos_steps,
            cos_rounds=args.cos_rounds,
            progress=args.progress,
        )
        table, fp32, samples = model.calibrate(
            args.data, opset=args.opset, return_inputs=True, log=status.log, **vars(request)
        )
    if not floor.required:
        _save_table(table, args.output)  # before the report: a long calibration is kept whatever happens next
    _print_steps(table)
    report = _quality_report(args, (fp32, table, samples), held_out)
    _print_report(args, report)
    fidelity = Fidelity.from_json(report["fidelity"])
    print(fidelity.line())
    judge(fidelity, floor)  # below a required floor: an error, and no table written
    if floor.required:
        _save_table(table, args.output)
    if args.report:
        save_report(report, args.report)
        print(f"wrote {args.report}")
        if Path(args.report).suffix.lower() != ".json":
            judged = samples if held_out is None else held_out.array
            print(f"wrote {_save_histograms(fp32, table, judged, report, Path(args.report))}")
    fidelity_warning(fidelity.shortfall(floor))  # below the floor (not required): said last, where it is read
    return 0


def _save_table(table, path: str) -> None:
    table.save(path)
    print(f"wrote {path}")


def _quality_report(args, calibrated, held_out) -> dict:
    """The quality report, announced with what it runs and timed (with ONNX Runtime's quantize_static it
    calibrates and runs two more models, which can take longer than the calibration)."""
    from ..quant.report.quality import ReportSettings, quality_report  # deferred for start-up: loads numpy, onnx

    fp32, table, samples = calibrated
    rivals = "" if args.no_compare else ", beside ONNX Runtime's quantize_static MinMax and Entropy (--no-compare: not)"
    print(f"quality report: INT8 vs FP32 on {args.report_samples} samples{rivals} ...", file=sys.stderr, flush=True)
    t = time.perf_counter()
    with PhaseStatus("quality report", args.progress):
        report = quality_report(
            fp32,
            table,
            samples,
            ReportSettings(samples=args.report_samples, seed=args.seed, compare=not args.no_compare),
            held_out=held_out,
        )
    print(f"quality report: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return report


def _report_files(report: Path) -> list[Path]:
    """The files --report writes: the report, and beside a chart its histograms (_save_histograms)."""
    if report.suffix.lower() == ".json":
        return [report]
    return [report, _histograms_path(report)]


def _histograms_path(chart: Path) -> Path:
    return chart.with_name(f"{chart.stem}.histograms{chart.suffix}")


def _print_steps(table) -> None:
    """The steps' choice, each step's summary and the placement."""
    from ..quant.place.placer import placement_lines  # deferred for start-up: loads numpy, onnx
    from ..quant.table.steps import summary_lines, table_choice_lines  # deferred for start-up: loads numpy, onnx

    for line in table_choice_lines(table):
        print(line)
    print("\n".join(f"step {line}" for line in summary_lines(table)))
    for line in placement_lines(table):
        print(line)


def _print_report(args, report: dict) -> None:
    """The quality report, a warning where held-out samples were also calibration samples, and for an AX chip the
    predicted NPU result in the shape of its toolchain's table."""
    from tcc.backends.ax.chips import CHIPS  # deferred for start-up: loads numpy

    from ..quant.report.quality import format_report  # deferred for start-up: loads numpy, onnx

    print("\n".join(format_report(report)))
    overlap = report["samples"].get("also_calibration_samples")
    if overlap:
        print(
            f"WARNING: {overlap} of the {report['samples']['of']} held-out samples in {args.eval} are also "
            "calibration samples: the held-out numbers are flattered",
            file=sys.stderr,
        )
    if args.target in CHIPS:  # the predicted NPU result, in the shape of the toolchain's own table
        from ..quant.report.npu_tables import npu_table  # deferred for start-up: loads numpy

        chip = CHIPS[args.target]
        print(
            f"\npredicted {chip.hardware} NPU result ({chip.toolchain.name}'s table; the integer reference under "
            f"the chip's rules, on {report['samples']['used']} samples):"
        )
        print("\n".join(npu_table(report, chip.toolchain.name)))


def _held_out(args):
    """`--eval DIR`: every image of DIR (or the rows of a .npy/.npz) through the spec's preprocessing, the same
    loader as calibration's, so a folder that calibrates also evaluates."""
    from ..quant.collect.data import load_calibration_data  # deferred for start-up: loads numpy
    from ..quant.report.quality import HeldOut  # deferred for start-up: loads numpy, onnx

    model = load_spec(args.spec, parse_overrides(args.overrides))
    data = load_calibration_data(
        args.eval, model.preprocess, model.input_shape, None, args.seed, args.skip_bad, what="held-out"
    )
    return HeldOut(data.array, str(args.eval), data.fingerprint)


def _save_histograms(fp32, table, samples, report: dict, chart: Path) -> Path:
    """Beside an image report, STEM.histograms.SUFFIX: the FP32 values of the worst activation tensors (at most
    six) on the samples the report used, with the clipping threshold calibration chose."""
    from ..plots import activation_histograms, save  # deferred for start-up: loads numpy
    from ..quant.collect.stats import run_fp32  # deferred for start-up: loads numpy, onnx
    from ..quant.table.steps import equalized_model  # deferred for start-up: loads numpy, onnx

    tensors = table.tensors
    names = [n for n in report["worst_layers"] if tensors.get(n, {}).get("kind") == "activation"][:6]
    if not names:  # no activation among the worst: the first six quantized activations
        names = [n for n, t in tensors.items() if t.get("kind") == "activation"][:6]
    values = run_fp32(equalized_model(fp32, table), samples[report["samples"]["indices"]], names)
    return save(
        activation_histograms(values, {n: tensors[n] for n in names}),
        _histograms_path(chart),
    )
