"""Arguments and checks that several `tcc` subcommands share (the spec with its `--set` overrides, the weights
options, a bundle that replaces them), so each command's parser says them the same way."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

from ..errors import BuildError, DataError
from ..spec.loader import parse_overrides

SET_HELP = (
    "override a model parameter (repeatable), e.g. --set num_classes=2; for an ONNX file the "
    "import's options: --set size=[H,W] --set mean=[...] --set std=[...]"
)


def spec_args(p: argparse.ArgumentParser) -> None:
    """SPEC and its --set overrides, as most commands take them."""
    p.add_argument(
        "spec",
        help="model spec (YAML or JSON), a zoo model's name, or an ONNX file (imported in memory with its weights)",
    )
    overrides_arg(p, SET_HELP)


def overrides_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    """--set KEY=VALUE (repeatable, into args.overrides); `help_text`: what it overrides in this command."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def force_arg(p, what: str) -> None:
    """--force: replace `what` (e.g. "an existing OUT folder"); without it a command refuses to replace an output
    (tcc.files.check_replaceable), before any work."""
    p.add_argument("--force", action="store_true", help=f"replace {what}")


def max_pixels_arg(p: argparse.ArgumentParser) -> None:
    """--max-pixels: the largest image read (tcc.data.open_image checks the declared size before decoding)."""
    p.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="refuse images declaring more than N pixels, before decoding them (default 20,000 x 20,000)",
    )


# the options that say where a model's weights come from; a command's own help text replaces one by its dest
WEIGHTS_OPTIONS: dict[str, dict] = {
    "--weights": {"help": "PyTorch state_dict (.pt/.pth), loaded with weights_only=True"},
    "--by-order": {"action": "store_true", "help": "match checkpoint tensors to the spec in order"},
    "--key-map": {"help": "YAML/JSON mapping of checkpoint keys (or 'prefix.') to spec names"},
    "--seed": {"type": int, "default": 0, "help": "seed of the random weights used without --weights"},
}


def weights_args(p: argparse.ArgumentParser, flags: tuple[str, ...] = tuple(WEIGHTS_OPTIONS), **help_texts) -> None:
    """The weights options named in `flags` (default: all four), in that order; `help_texts`, by dest (e.g.
    key_map="..."): a command's own wording of one."""
    for flag in flags:
        options = dict(WEIGHTS_OPTIONS[flag])
        dest = flag[2:].replace("-", "_")
        if dest in help_texts:
            options["help"] = help_texts[dest]
        p.add_argument(flag, **options)


def load_model(args, spec=None, *, notes: bool = False):
    """The model of the command's SPEC (or `spec`), with its --weights, --by-order, --key-map, --seed (0 where the
    command has none) and --set overrides: tcc.api.Model.load as every command calls it; `notes`: also print what
    the loading decided on its own (`print_notes`)."""
    from ..api import Model  # deferred for start-up: loads numpy, onnx, torch

    model = Model.load(
        spec or args.spec,
        args.weights,
        by_order=args.by_order,
        key_map=args.key_map,
        seed=getattr(args, "seed", 0),
        **parse_overrides(args.overrides),
    )
    if notes:
        print_notes(model)
    return model


def print_notes(model) -> None:
    """What loading the model decided on its own (e.g. num_classes from the checkpoint), on stderr."""
    for note in model.notes:
        print(f"note: {note}", file=sys.stderr)


def progress_arg(p: argparse.ArgumentParser, applies_to: str = "") -> None:
    """--progress / --no-progress (None: a bar when stderr is a terminal); `applies_to`: e.g. "t-SNE: "."""
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"{applies_to}progress bar on stderr (default: when stderr is a terminal)",
    )


def refuse_with_artifact(args) -> None:
    """With --artifact the bundle's spec, weights and parameters are baked in: a SPEC or weights option given as
    well is a mistake (exit 2), not silently ignored."""
    baked = [
        flag
        for flag, on in [
            ("SPEC", args.spec),
            ("--weights", args.weights),
            ("--by-order", args.by_order),
            ("--key-map", args.key_map),
            ("--set", args.overrides),
        ]
        if on
    ]
    if baked:
        raise BuildError(
            f"--artifact runs a built bundle: its spec, weights and parameters are baked in; drop {', '.join(baked)}"
        )


def steps_args(p) -> None:
    """The post-training steps' switches (tcc.quant.table.steps), shared by `tcc calibrate` and `tcc build --data`. Not
    given, each takes the spec's `calibrate:` section, else tcc's default."""
    from ..quant.table.steps import UNCHOSEN, Steps  # deferred for start-up: loads numpy, onnx

    on_off = argparse.BooleanOptionalAction

    def state(name):
        default = "off" if name in UNCHOSEN else "chosen per model on held-back calibration samples"
        return f"default: the spec's `calibrate:` section, else {default}"

    p.add_argument(
        "--equalization",
        action=on_off,
        default=None,
        help="cross-layer equalization of producer -> consumer pairs through a ReLU ("
        + state("equalization")
        + "; measured on the DDSNet checkpoints: README, INT8)",
    )
    p.add_argument(
        "--bias-correction",
        action=on_off,
        default=None,
        help="empirical per-channel bias correction on the calibration data (" + state("bias_correction") + ")",
    )
    p.add_argument(
        "--asymmetric",
        action=on_off,
        default=None,
        help="ORT's rules: signed activations on u8 grids over their clipped range, the zero point where 0 falls, "
        "instead of [-T, T] around 128 (" + state("asymmetric") + "; other rules: symmetric)",
    )
    p.add_argument(
        "--rounding",
        action=on_off,
        default=None,
        help="choose each weight's rounding per layer on the calibration data (AdaRound-style; "
        + state("rounding")
        + ")",
    )
    p.add_argument(
        "--activation-bits",
        type=int,
        choices=[8, 16],
        default=None,
        help="activation width: 8 (default; the spec's `calibrate:` section may say 16), or 16: int16 "
        "activations with 8-bit weights (W8A16; TVM targets, TFLite's 16x8 mode; ranges by minmax, "
        "no cosine search: README, INT8)",
    )
    p.add_argument(
        "--rounding-budget",
        type=float,
        metavar="SECONDS",
        help="with --rounding: stop choosing roundings after this many seconds (between layers; the table "
        "then depends on the machine's speed and says which layers were reached)",
    )
    p.add_argument(
        "--choice-budget",
        type=float,
        metavar="SECONDS",
        help="seconds for choosing the steps that neither these switches nor the spec fix (default "
        f"{Steps().choice_budget:g}; each combination is judged by the INT8 output cosine on a quarter "
        "of the calibration samples held back from the statistics (on folds, until 32 are judged, unless the "
        "first candidate's folds would take the whole budget); no trial starts past the budget, "
        "and the table then says so; 0: no choosing, those steps stay off)",
    )


METHOD_CHOICES = ["auto", "kl+cos", "minmax", "percentile", "kl"]  # tcc.quant.scales.methods.METHODS and AUTO


def method_arg(p, default: str) -> None:
    """The calibration method (`default`: what the command takes without it)."""
    p.add_argument(
        "--method",
        choices=METHOD_CHOICES,
        help=f"auto: kl+cos, minmax or percentile (at --percentile and 99.999), judged per model on held-back "
        f"samples (default: {default})",
    )


def percentile_arg(p) -> None:
    """The percentile method's percentile, shared by `tcc calibrate` and `tcc build --data`."""
    p.add_argument(
        "--percentile",
        type=_percentile,
        metavar="P",
        default=99.99,
        help="the percentile method's: |x| below which this %% of the values lie is kept (default 99.99)",
    )


def _percentile(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be in (0, 100], not {text}")
    return value


def step_switches(args):
    """The steps' switches as given (None: not given); tcc.quant.settings.StepSwitches.steps resolves them against
    the spec's `calibrate:` section where the model is loaded."""
    from ..quant.settings import StepSwitches  # deferred for start-up: loads numpy, onnx

    return StepSwitches(
        equalization=args.equalization,
        bias_correction=args.bias_correction,
        rounding=args.rounding,
        asymmetric=args.asymmetric,
        rounding_budget=args.rounding_budget,
        choice_budget=args.choice_budget,
    )


def calibration_request(args, **settings):
    """The calibration `tcc calibrate` and `tcc build --data` ask for, from the flags they share (steps_args,
    placement_args, --method, --percentile, --calib-size, --skip-bad); `settings`: the command's own
    CalibrationSettings fields."""
    from ..quant.settings import CalibrationRequest, CalibrationSettings  # deferred for start-up: loads numpy, onnx

    return CalibrationRequest(
        CalibrationSettings(
            method=args.method, percentile=args.percentile, activation_bits=args.activation_bits, **settings
        ),
        step_switches(args),
        place_options(args),
        args.calib_size,
        args.skip_bad,
    )


def specs_args(p: argparse.ArgumentParser, specs_help: str, set_applies_to: str) -> None:
    p.add_argument("specs", nargs="*", help=specs_help)
    overrides_arg(p, f"override a model parameter ({set_applies_to})")


def placement_args(p: argparse.ArgumentParser, when: str) -> None:
    """The placement step's options (tcc.quant.place.placer), shared by calibrate and build --data."""
    p.add_argument(
        "--min-cos",
        type=float,
        metavar="C",
        help=f"{when}keep the fewest nodes in float (float islands) that bring the mean output cosine vs "
        "FP32 on the calibration samples to C (measured per node, greedy by gain per cost)",
    )
    p.add_argument(
        "--min-worst-cos",
        type=float,
        metavar="W",
        help=f"{when}the same placement, also until the lowest per-sample output cosine vs FP32 on those "
        "samples is at least W (a floor for the worst input, not only the mean)",
    )
    p.add_argument(
        "--speed",
        action="store_const",
        const="ort",
        help=f"{when}ort rules: keep in float the nodes whose ONNX Runtime integer kernel measures slower "
        "than float on this CPU (profiled here), where the cosine floor (--min-cos, default 0.9995) "
        "allows it",
    )
    p.add_argument(
        "--keep-float",
        action="append",
        default=[],
        metavar="NODE",
        help=f"{when}keep this node of the integer graph in float (repeatable)",
    )
    p.add_argument(
        "--no-wide",
        dest="wide",
        action="store_false",
        help=f"{when}--min-cos / --min-worst-cos keep nodes in float only; by default, where the target's "
        "kernels take 16-bit activations too (TVM's), the search first widens activations to 16 bits "
        "(the model stays integer) and keeps nodes in float only for what is still missing",
    )
    p.add_argument(
        "--place-samples",
        type=int,
        default=16,
        metavar="N",
        help=f"{when}calibration samples (seeded subset) the placement judges the cosine on (default 16)",
    )


def fidelity_args(p, judged_on: str) -> None:
    """--fidelity-floor / --require-cos: below the floor an INT8 model is reported (a WARNING line), or refused
    (exit 2, nothing written); `judged_on`: the samples the command judges on."""
    p.add_argument(
        "--fidelity-floor",
        type=float,
        default=0.99,
        metavar="C",
        help=f"warn when the INT8 output's mean cosine vs FP32 on {judged_on} is below C, or a top-1 class changed",
    )
    p.add_argument(
        "--require-cos",
        type=float,
        metavar="C",
        help="as --fidelity-floor C, but an error (exit 2, nothing written) instead of a warning",
    )


def fidelity_floor(args):
    """The floor the fidelity flags ask for (tcc.quant.report.fidelity.FidelityFloor)."""
    from ..quant.report.fidelity import FidelityFloor  # deferred for start-up: loads numpy

    for flag, value in (("--fidelity-floor", args.fidelity_floor), ("--require-cos", args.require_cos)):
        if value is not None and not 0.0 < value <= 1.0:
            raise DataError(f"{flag} {value:g}: a cosine in (0, 1]")
    if args.require_cos is not None:
        return FidelityFloor(cosine=args.require_cos, required=True)
    return FidelityFloor(cosine=args.fidelity_floor)


@contextlib.contextmanager
def quiet_fidelity_warnings():
    """Inside, the library's FidelityWarning (Python callers' signal) is not shown: the command prints its own
    WARNING line from what it measured (`fidelity_warning`), at the end of its output."""
    from ..quant.report.fidelity import FidelityWarning  # deferred for start-up: loads numpy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidelityWarning)
        yield


def fidelity_warning(shortfall: str | None) -> None:
    """The WARNING line of a fidelity below the floor (`shortfall`: what fell below it; None: nothing)."""
    from ..quant.report.fidelity import warning_text  # deferred for start-up: loads numpy

    if shortfall:
        print(f"WARNING: {warning_text(shortfall)}", file=sys.stderr)


def place_options(args):
    from ..quant.place.placer import PlaceOptions  # deferred for start-up: loads numpy, onnx

    return PlaceOptions(
        min_cos=args.min_cos,
        min_worst_cos=args.min_worst_cos,
        speed=args.speed,
        keep_float=tuple(args.keep_float),
        samples=args.place_samples,
        seed=getattr(args, "seed", 0),
        wide=args.wide,
    )
