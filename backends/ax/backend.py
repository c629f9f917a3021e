"""The AX backend: targets ax620 (Pulsar v1), ax620e and ax650 (Pulsar2). Axera's toolchains run only in their
own Docker images, so a build writes a kit for them and checks here everything that can be checked without them:

    model.onnx               the graph after tcc's passes (BN folded), at an opset the toolchain takes, with the
                             op checker's exact rewrites applied (backends/ax/ops.py); self-checked in ONNX Runtime
                             against the PyTorch lowering, as every FP32 build is
    model_qdq.onnx           ax650 only: the QDQ model carrying tcc's own KL+cosine scales (model_type QuantONNX),
                             checked op by op in ONNX Runtime against the integer reference
    config.prototxt | config.json (+ config_calibrate.json on ax650)   validated and read back (ax/config.py)
    calibration.tar          the samples tcc calibrated on, in the toolchain's format (ax/dataset.py), read back
                             and compared with tcc's calibration tensors
    build.sh                 the toolchain's exact command (and its own ONNX-vs-NPU comparison)
    op_check.json            every node against the chip's op list: rewrites made, advisories, the CPU split
    prediction.json, precision_table.txt   the integer reference under the chip's rules vs FP32, per layer and
                             end to end, in the shape of the toolchain's own precision table
    calibration.json         tcc's table (README.md and manifest.json as every bundle)

Every node is checked before anything is calibrated or written: an unsupported node fails the build with its name,
the docs' constraint and the rewrite tried, unless --allow-cpu-fallback (the split is then recorded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tcc.bundle import stable_float
from tcc.errors import BuildError, SelfCheckError
from tcc.passes.base import PassError
from tcc.passes.batch import fixed_batch
from tcc.quant.intgraph.match import plan, quantized_form
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.reference import backend_tensors, per_op_deviation
from tcc.quant.lower.qdq import to_qdq
from tcc.quant.report.npu_tables import npu_table
from tcc.quant.report.quality import ReportSettings, quality_report
from tcc.quant.table.placement import float_nodes
from tcc.spec.loader import Preprocess

from ..base import Backend, Capabilities, EmitOptions
from ..onnx_runtime import load_bundle, qdq_codes, run_loaded
from .chips import CHIPS, Chip, get_chip
from .config import Enum, write_prototxt, write_pulsar2
from .dataset import ARCHIVE, pixel_normalization, read_back, samples, write_archive
from .ops import check_model, cpu_split
from .options import KitOptions

MODEL = "model.onnx"
QDQ_MODEL = "model_qdq.onnx"
PREDICTION_SAMPLES = 8  # samples of the build's prediction (`tcc calibrate --target` takes --report-samples)
ARCHIVE_ATOL = 1e-5  # the archive's tensors vs tcc's: both compute (x * scale - mean) / std in float32 from the
# same 8-bit pixels, so only a different pixel (a lossy or misaligned image) moves them; one pixel level is 1/255/std
QDQ_LSB = 1.0  # ORT's float fake-quant of the QDQ model, per op on its own inputs, vs the integer reference: the
# float32 sum may round a code the other way where the exact value is within float error of a tie


@dataclass(frozen=True)
class _KitInput:
    """What a toolchain's config says of the model's input: the chip, the calibration samples' format and count, the
    spec's preprocessing, the input's channels and tensor name, and the NPU mode."""

    chip: Chip
    fmt: str
    count: int
    pre: Preprocess
    channels: int
    npu_mode: str
    input_name: str


class AxBackend(Backend):
    options_type = KitOptions

    def __init__(self) -> None:
        self._kit: dict = {}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            name="ax",
            targets=tuple(CHIPS),
            precisions=("int8",),
            onnx_ops=None,
            opsets=(11, 21),
            runs_here=False,
            int8_lowering="qdq",
            int8_exact=False,
            kit=True,
        )

    # ------------------------------------------------------------------ checks
    def check(self, model, options: EmitOptions) -> None:
        chip = get_chip(options.target)
        lo, hi = chip.opsets
        if not lo <= options.opset <= hi:
            raise BuildError(
                f"target {options.target}: {chip.toolchain.name} takes ONNX opset {lo}..{hi} for "
                f"{chip.hardware}, not {options.opset} (--opset)"
            )
        own = self.own_options(options)
        if own.npu_mode is not None and own.npu_mode not in chip.npu_modes:
            raise BuildError(
                f"target {options.target}: --npu-mode {own.npu_mode!r} is not one of {', '.join(chip.npu_modes)}"
            )
        result = check_model(_compiled_form(model, chip), chip.ops)
        bad = result.unsupported
        if bad and not own.allow_cpu_fallback:
            lines = "\n".join(f"  {f.line()}" for f in bad)
            raise BuildError(
                f"target {options.target}: {len(bad)} node(s) the {chip.hardware} NPU cannot run "
                f"(from {chip.toolchain.name}'s op list):\n{lines}\nnothing was written; "
                "--allow-cpu-fallback builds the kit anyway and records which nodes fall to the CPU"
            )
        self._kit["check"] = result

    # ------------------------------------------------------------------ emit
    def emit(self, model, options: EmitOptions, out_dir: Path) -> list[str]:
        chip = get_chip(options.target)
        out_dir = Path(out_dir)
        if options.table is None or options.data is None:
            raise BuildError(f"target {options.target}: a kit needs the calibration data (--data) and its table")
        result = self._kit.get("check") or check_model(_compiled_form(model, chip), chip.ops)
        model = quantized_form(model, chip.rules)  # the graph the toolchain quantizes: a conv before its pool
        cd, pre = options.data, options.preprocess
        prepared = result.model  # at batch 1
        _save_onnx(prepared, out_dir / MODEL)
        files = [MODEL]
        if chip.quant_onnx:
            _save_onnx(to_qdq(prepared, options.table), out_dir / QDQ_MODEL)  # the rewritten graph: same tensors
            files.append(QDQ_MODEL)

        fmt, members = samples(cd, pre, chip.toolchain.name)
        write_archive(out_dir / ARCHIVE, members)
        files.append(ARCHIVE)
        input_name = next(i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
        channels = int(cd.array.shape[1])
        npu_mode = self.own_options(options).npu_mode or chip.npu_modes[0]
        floats = _float_layers(model, options.table)  # float islands: Pulsar2 pins them to FP32 (the rules refuse
        # islands for Pulsar v1, whose documented config has no per-layer precision)
        kit = _KitInput(chip, fmt, len(members), pre, channels, npu_mode, input_name)
        if chip.toolchain.name == "pulsar":
            configs = self._pulsar_config(kit, out_dir)
        else:
            configs = self._pulsar2_configs(kit, out_dir, floats)
        files += configs

        split = None
        if result.unsupported:
            split = cpu_split(prepared, {f.node for f in result.unsupported})
        op_check = {
            "chip": chip.hardware,
            "toolchain": chip.toolchain.name,
            "op_table": chip.ops,
            "nodes": len(prepared.graph.node),
            "rewrites": result.rewrites,
            "unsupported": [f.to_json() for f in result.unsupported],
            "advisories": [f.to_json() for f in result.advisories],
            "toolchain_decides_cpu_or_npu": result.toolchain_decides,
            "cpu_fallback": split is not None,
            **({"split": split} if split else {}),
        }
        (out_dir / "op_check.json").write_text(json.dumps(op_check, indent=1) + "\n")
        files.append("op_check.json")

        prediction = self.predict(model, options.table, cd.array, chip.toolchain.name)
        table_lines = prediction.pop("table_lines")
        (out_dir / "prediction.json").write_text(json.dumps(prediction, indent=1, sort_keys=True) + "\n")
        (out_dir / "precision_table.txt").write_text("\n".join(table_lines) + "\n")
        files += ["prediction.json", "precision_table.txt"]

        (out_dir / "build.sh").write_text(self._build_sh(chip, npu_mode, members, fmt))
        (out_dir / "build.sh").chmod(0o755)
        files.append("build.sh")
        self._kit.update(
            chip=chip,
            fmt=fmt,
            samples=len(members),
            npu_mode=npu_mode,
            op_check=op_check,
            float_layers=floats,
            prediction=prediction,
            configs=configs,
        )
        return files

    @staticmethod
    def predict(model, table, data: np.ndarray, toolchain: str, samples: int = PREDICTION_SAMPLES) -> dict:
        """The integer reference under the table's (the chip's) rules vs FP32: tcc.quant.report.quality's numbers,
        without
        its wall times (a kit is byte-identical when rebuilt), and the toolchain-shaped table."""
        report = quality_report(model, table, data, ReportSettings(samples=samples, compare=False))
        report.pop("timing_s", None)
        report["end_to_end"]["models"].pop("tcc_ort", None)  # fake-quant on ORT: the QDQ check's business
        report["table_lines"] = npu_table(report, toolchain)
        return report

    # ------------------------------------------------------------------ configs
    @staticmethod
    def _pulsar_config(kit: _KitInput, out_dir) -> list[str]:
        chip, fmt, n, pre, channels, npu_mode = kit.chip, kit.fmt, kit.count, kit.pre, kit.channels, kit.npu_mode
        color = {"RGB": "TENSOR_COLOR_SPACE_RGB", "BGR": "TENSOR_COLOR_SPACE_BGR", "L": "TENSOR_COLOR_SPACE_GRAY"}
        attributes: list[tuple[str, Any]] = []
        if fmt == "Image":
            assert pre.color is not None  # calibration images are read by an image input's preprocessing
            mean, std = pixel_normalization(pre)
            mean, std = _per_channel(mean, channels), _per_channel(std, channels)
            attributes = [("input_modifications", [("input_normalization", [("mean", mean), ("std", std)])])]
            tensors = [
                ("src_input_tensors", [("color_space", Enum(color[pre.color]))]),
                ("dst_input_tensors", [("color_space", Enum(color[pre.color]))]),
            ]
        else:  # preprocessed float samples: the compiled model takes float input ([pulsar-docs] FLOAT input)
            attributes = [("type", Enum("FLOAT32"))]
            tensors = []
        msg = [
            ("input_type", Enum("INPUT_TYPE_ONNX")),
            ("output_type", Enum("OUTPUT_TYPE_JOINT")),
            ("target_hardware", Enum(f"TARGET_HARDWARE_{chip.hardware}")),
            (
                "cpu_backend_settings",
                [
                    ("onnx_setting", [("mode", Enum("DISABLED"))]),
                    ("axe_setting", [("mode", Enum("ENABLED")), ("axe_param", [("optimize_slim_model", True)])]),
                ],
            ),
            *tensors,
            (
                "neuwizard_conf",
                [
                    ("operator_conf", [("input_conf_items", [("attributes", attributes)])]),
                    (
                        "dataset_conf_calibration",
                        [("path", ARCHIVE), ("type", Enum("DATASET_TYPE_TAR")), ("size", n), ("batch_size", 1)],
                    ),
                    (
                        "dataset_conf_error_measurement",
                        [("path", ARCHIVE), ("type", Enum("DATASET_TYPE_TAR")), ("size", min(n, 4))],
                    ),
                    (
                        "evaluation_conf",
                        [
                            ("path", "neuwizard.evaluator.error_measure_evaluator"),
                            ("type", Enum("EVALUATION_TYPE_ERROR_MEASURE")),
                            ("source_ir_types", Enum("IR_TYPE_ONNX")),
                            ("ir_types", Enum("IR_TYPE_LAVA")),
                            ("score_compare_per_layer", True),
                        ],
                    ),
                ],
            ),
            ("pulsar_conf", [("ax620_virtual_npu", Enum(npu_mode)), ("batch_size", 1)]),
        ]
        write_prototxt(
            msg,
            out_dir / chip.toolchain.config_file,
            [
                f"Pulsar v1 (neuwizard) config for {chip.hardware}, written by tcc; paths are relative to this file",
                f"input_normalization: the spec's preprocessing on 0..255 pixels, channel order {pre.color}",
            ],
        )
        return [chip.toolchain.config_file]

    @staticmethod
    def _pulsar2_configs(kit: _KitInput, out_dir, floats=()) -> list[str]:
        chip, fmt, n, pre, channels, npu_mode = kit.chip, kit.fmt, kit.count, kit.pre, kit.channels, kit.npu_mode
        input_name = kit.input_name
        calib: dict[str, Any] = {
            "tensor_name": input_name,
            "calibration_dataset": ARCHIVE,
            "calibration_format": fmt,
            "calibration_size": n,
        }
        proc: dict[str, Any] = {"tensor_name": input_name, "tensor_layout": "NCHW"}
        if fmt == "Image":
            assert pre.color is not None  # calibration images are read by an image input's preprocessing
            mean, std = pixel_normalization(pre)
            calib.update(calibration_mean=_per_channel(mean, channels), calibration_std=_per_channel(std, channels))
            fmt_name = {"RGB": "RGB", "BGR": "BGR", "L": "GRAY"}[pre.color]
            # the NPU model takes the camera's uint8 NHWC image; mean / std (from calibration_mean / std) and the
            # layout change run on the NPU
            proc.update(
                tensor_format=fmt_name, src_format=fmt_name, src_dtype="U8", src_layout="NHWC", csc_mode="NoCSC"
            )
        else:
            proc.update(src_dtype="FP32", src_layout="NCHW", mean=[0.0] * channels, std=[1.0] * channels)
        layers = [{"start_tensor_names": ["DEFAULT"], "end_tensor_names": ["DEFAULT"], "data_type": "U8"}]
        if floats:  # [pulsar2-docs-en] config.md: layer_configs by `layer_names`, data_type / output_data_type /
            # weight_data_type FP32 ("option: U8, S8, U16, S16, FP32"): the float islands of tcc's placement
            layers.append(
                {
                    "layer_names": list(floats),
                    "data_type": "FP32",
                    "output_data_type": "FP32",
                    "weight_data_type": "FP32",
                }
            )
        quant = {
            "input_configs": [calib],
            "layer_configs": layers,
            "conv_bias_data_type": "S32",
            "precision_analysis": True,
            "precision_analysis_method": "PerLayer",
            "precision_analysis_mode": "Reference",
        }
        compiler = {"check": 3, "check_cosine_simularity": 0.999}  # [sic]: the docs' spelling
        written = []
        own = {
            "model_type": "ONNX",
            "npu_mode": npu_mode,
            "target_hardware": chip.hardware,
            "quant": {**quant, "calibration_method": "KL", "enable_easy_quant": True},
            "input_processors": [proc],
            "compiler": compiler,
        }
        if chip.quant_onnx:
            qdq = {
                "model_type": "QuantONNX",
                "npu_mode": npu_mode,
                "target_hardware": chip.hardware,
                "quant": quant,
                "input_processors": [proc],
                "compiler": compiler,
            }
            write_pulsar2(qdq, out_dir / "config.json")
            write_pulsar2(own, out_dir / "config_calibrate.json")
            written = ["config.json", "config_calibrate.json"]
        else:
            write_pulsar2(own, out_dir / "config.json")
            written = ["config.json"]
        return written

    @staticmethod
    def _build_sh(chip, npu_mode, members, fmt) -> str:
        tc = chip.toolchain
        sample = members[0][0]
        lines = [
            "#!/bin/sh",
            f"# Build this kit for {chip.hardware} with Axera's {tc.name} toolchain, inside its Docker image:",
            f"#   {tc.docker_load}",
            f"#   {tc.docker_run}",
            "#   cd /data && sh build.sh            (this folder mounted at /data)",
            "set -e",
            'cd "$(dirname "$0")"',
            "mkdir -p output",
        ]
        if tc.name == "pulsar":
            vnpu = npu_mode.rsplit("_", 1)[1]
            lines += [
                f"pulsar build --input {MODEL} --output {tc.artifact} --config {tc.config_file} "
                f"--target_hardware {chip.hardware} --virtual_npu {vnpu} "
                "--output_config output/output_config.prototxt"
            ]
            if fmt == "Image":
                lines += [
                    "# the toolchain's own comparison (ONNX vs .joint) on one calibration image:",
                    f"tar -xf {ARCHIVE} -C output {sample}",
                    f"pulsar run {MODEL} {tc.artifact} --input output/{sample} "
                    "--config output/output_config.prototxt --output_gt output/gt",
                ]
        else:
            model = QDQ_MODEL if chip.quant_onnx else MODEL
            lines += [
                f"pulsar2 build --target_hardware {chip.hardware} --input {model} --output_dir output "
                f"--config config.json"
            ]
            if chip.quant_onnx:
                lines += [
                    "# or let Pulsar2 calibrate the float model itself (KL with EasyQuant):",
                    f"# pulsar2 build --target_hardware {chip.hardware} --input {MODEL} --output_dir "
                    "output_calibrated --config config_calibrate.json",
                ]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ run (the kit's FP32 model, here)
    def load(self, bundle_dir: Path):
        return load_bundle(Path(bundle_dir))  # model.onnx: the file name of an ORT bundle's artifact too

    def run(self, loaded, x: np.ndarray) -> np.ndarray:
        return run_loaded(loaded, x)

    def check_run(self, bundle_dir: Path, x: np.ndarray, precision: str) -> np.ndarray:
        """The kit's model.onnx (what the toolchain is given, rewrites applied) in ONNX Runtime: the build checks
        it against the PyTorch lowering with the FP32 rule."""
        return self.run(self.load(bundle_dir), x)

    # ------------------------------------------------------------------ target checks
    def extra_checks(self, model, options: EmitOptions, bundle_dir: Path, x: np.ndarray, got: np.ndarray) -> dict:
        kit = self._kit
        chip = kit["chip"]
        cd, pre = options.data, options.preprocess
        bundle_dir = Path(bundle_dir)
        back = read_back(bundle_dir / ARCHIVE, kit["fmt"], pre, tuple(cd.array.shape[1:]))
        if back.shape != cd.array.shape:
            raise SelfCheckError(
                f"{ARCHIVE}: {len(back)} samples of shape {list(back.shape[1:])}, calibration "
                f"used {len(cd.array)} of {list(cd.array.shape[1:])}; no kit was written"
            )
        d = float(np.max(np.abs(back - cd.array))) if back.size else 0.0
        archive = {
            "samples": len(back),
            "format": kit["fmt"],
            "max_abs_vs_calibration_tensors": stable_float(d),
            "required": f"<= {ARCHIVE_ATOL}",
            "passed": d <= ARCHIVE_ATOL,
        }
        if not archive["passed"]:
            raise SelfCheckError(
                f"{ARCHIVE}: the archive's samples differ from the calibration tensors by {d} "
                f"(at most {ARCHIVE_ATOL}); no kit was written"
            )
        p = kit["prediction"]["end_to_end"]["models"]["tcc_reference"]
        layers = kit["prediction"]["layers"]
        worst = min(layers, key=lambda r: r["cosine"]) if layers else None
        prediction = {
            "source": "the integer reference under the chip's rules (tcc.quant.reference)",
            "samples": kit["prediction"]["samples"]["used"],
            "output_cosine": p["cosine_mean"],
            "output_cosine_min": p["cosine_min"],
            "top1_agreement": p["top1_agreement"],
            **({"worst_layer": worst["tensor"], "worst_layer_cosine": worst["cosine"]} if worst else {}),
            "docs_threshold": chip.min_cosine,
            "meets_docs_threshold": p["cosine_min"] >= chip.min_cosine,
        }
        checks = {
            "op_check": {
                "rewrites": len(kit["op_check"]["rewrites"]),
                "unsupported": len(kit["op_check"]["unsupported"]),
                "advisories": len(kit["op_check"]["advisories"]),
                "cpu_fallback": kit["op_check"]["cpu_fallback"],
            },
            "archive": archive,
            "prediction": prediction,
        }
        if chip.quant_onnx:
            checks["qdq"] = self._qdq_check(model, options, bundle_dir, x)
        return checks

    @staticmethod
    def _qdq_check(model, options, bundle_dir, x) -> dict:
        """model_qdq.onnx in ONNX Runtime as float fake-quant (graph optimizations off: each QuantizeLinear is
        exactly ONNX's equation), its codes of every quantized tensor against the integer reference op by op."""
        import onnx  # deferred for start-up: tcc's CLI loads every backend

        qgraph = quantize_graph(plan(model, lowering="qdq", rules=options.table.rules), options.table)
        qdq = onnx.load(str(Path(bundle_dir) / QDQ_MODEL))  # what the kit ships, read back
        y, exposed = qdq_codes(model, qdq, options.table, x, optimize=False)
        codes, floats = backend_tensors(qgraph, x, exposed)
        per_op = per_op_deviation(qgraph, codes, {qgraph.outputs[0]: y}, floats)
        passed = per_op["ops_checked"] == len(qgraph.nodes) and per_op["max_lsb"] <= QDQ_LSB
        entry = {
            "runtime": "ONNX Runtime, graph optimizations off (float fake-quant of the QDQ model)",
            "ops_checked": per_op["ops_checked"],
            "max_lsb": stable_float(per_op["max_lsb"]),
            "worst_op": per_op["worst_op"],
            "required": f"every integer op <= {QDQ_LSB} LSB of the reference op on its own input codes",
            "passed": passed,
        }
        if not passed:
            raise SelfCheckError(
                f"{QDQ_MODEL}: {per_op['ops_checked']} of {len(qgraph.nodes)} integer ops checked, "
                f"the worst, {per_op['worst_op']!r}, {per_op['max_lsb']} LSB from the integer "
                f"reference (at most {QDQ_LSB}); no kit was written"
            )
        return entry

    def runtime_info(self, options: EmitOptions) -> dict:
        chip = get_chip(options.target)
        kit = self._kit
        tc = chip.toolchain
        op = kit.get("op_check", {})
        p = kit.get("prediction", {}).get("end_to_end", {}).get("models", {}).get("tcc_reference", {})
        run = [
            f"This is a kit for Axera's {tc.name} toolchain ({chip.description}). The toolchain runs only in "
            "Axera's Docker image:",
            "",
            "```sh",
            tc.docker_load,
            tc.docker_run,
            "cd /data && sh build.sh   # writes " + tc.artifact,
            "```",
            "",
            "Kit files:",
            "",
            f"- `{MODEL}`: the graph after tcc's passes, opset {options.opset}"
            + (
                f", {len(op.get('rewrites', []))} node(s) rewritten into forms the op list accepts (`op_check.json`)"
                if op.get("rewrites")
                else ""
            ),
            *(
                [f"- `{QDQ_MODEL}`: QDQ ONNX with tcc's KL+cosine scales (`model_type: QuantONNX` in config.json)"]
                if chip.quant_onnx
                else []
            ),
            f"- `{', '.join(kit.get('configs', []))}`: the toolchain config (validated, read back)",
            f"- `{ARCHIVE}`: the {kit.get('samples', 0)} calibration samples tcc used ({kit.get('fmt', '')}), "
            "already at the input size",
            "- `build.sh`: the exact command",
            "- `op_check.json`: every node against the chip's op list",
            "- `prediction.json`, `precision_table.txt`: the predicted NPU result (tcc's integer reference under the "
            "chip's rules) per layer and end to end, in the toolchain's table shape",
            "",
            f"Predicted output cosine vs FP32: {p.get('cosine_mean')} mean, {p.get('cosine_min')} worst, top-1 "
            f"agreement {p.get('top1_agreement')} (the docs investigate below {chip.min_cosine}).",
            "",
            "What differs from tcc's own INT8:",
            "",
            *(f"- {n}" for n in chip.notes),
            "- the rounding of the NPU's requantization is not documented; the prediction rounds half to even, and "
            "Pulsar2's docs put its board within one code of its own reference",
        ]
        if op.get("cpu_fallback"):
            run += [
                "",
                f"**CPU fallback**: {len(op['unsupported'])} node(s) run on the CPU (`op_check.json`, `split`).",
            ]
        floats = kit.get("float_layers") or []
        if floats:
            run += [
                "",
                f"**Float islands**: {len(floats)} ONNX node(s) stay in float (tcc's precision placement, "
                "`calibration.json` `placement`): `config.json` pins them with a `quant.layer_configs` entry "
                "(`layer_names`, `data_type` / `output_data_type` / `weight_data_type` FP32, Pulsar2's documented "
                "per-layer precision); whether the NPU or its CPU runs them is the toolchain's choice.",
            ]
        return {
            "runtime": f"Axera {tc.name} ({chip.hardware})",
            "artifact": MODEL,
            "toolchain_script": "build.sh",
            "toolchain": tc.name,
            "target_hardware": chip.hardware,
            "npu_mode": kit.get("npu_mode"),
            "toolchain_output": tc.artifact,
            "readme_run": run,
        }


def _compiled_form(model, chip):
    """The graph the toolchain compiles: the one the chip's rules quantize (a conv before its pool) at batch 1,
    static, as Axera's docs give their toolchains onnxsim-simplified batch-1 models (a ViT's class token reads
    the batch through Shape, which no Pulsar op list has: folded). A shape that stays dynamic is refused."""
    try:
        return fixed_batch(quantized_form(model, chip.rules), 1)
    except PassError as e:
        raise BuildError(
            f"target {chip.name}: {chip.toolchain.name} compiles one static shape, at batch 1: {e}; nothing was written"
        ) from None


def _float_layers(model, table) -> list[str]:
    """The ONNX nodes of the table's float islands (every node an island covers), in graph order."""
    graph = plan(model, rules=table.rules, floats=float_nodes(table))
    return [c for n in graph.islands for c in n.covers]


def _per_channel(values: list[float], channels: int) -> list[float]:
    return values * channels if len(values) == 1 and channels > 1 else values


def _save_onnx(model, path: Path) -> None:
    path.write_bytes(model.SerializeToString(deterministic=True))
