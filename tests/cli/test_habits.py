"""What a user's habits expect of the command line: --version, help on bare `tcc`, "did you mean" for a mistyped
command, target, precision or choice, grouped help with stated defaults, a completion script from the parser,
clear words for a file that is not a checkpoint, and no output replaced without --force."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from tcc.cli.main import main
from tcc.targets import TARGETS
from tests.helpers import REPO

TINY = REPO / "tests" / "specs" / "train_tiny.yaml"


def tcc(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's own exits: --help, --version, a usage error
            rc = e.code if isinstance(e.code, int) else 0
    return rc, out.getvalue(), err.getvalue()


def test_version_and_bare_tcc_print_and_exit_0():
    rc, out, _ = tcc("--version")
    assert rc == 0 and out.startswith("tcc ") and out.split()[1][0].isdigit()
    rc, out, err = tcc()
    assert rc == 0 and err == "" and "usage: tcc" in out
    for command in ("build", "calibrate", "completion"):
        assert f"    {command}" in out


@pytest.mark.parametrize(
    "argv, wanted",
    [
        (["biuld", "x"], "invalid choice: 'biuld' (did you mean 'build'?)"),
        (["build", "ddsnet", "--target", "ort", "--method", "klcos"], "(did you mean 'kl+cos'?)"),
        (["completion", "bsh"], "(did you mean 'bash'?)"),
    ],
)
def test_a_mistyped_choice_gets_the_nearest(argv, wanted):
    rc, _, err = tcc(*argv)
    assert rc == 2 and wanted in err, err


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["build", "ddsnet", "--target", "ort", "--percentile", "0"], "argument --percentile: must be in (0, 100]"),
        (["calibrate", "ddsnet", "--data", "x", "--percentile", "9x"], "argument --percentile: not a number: '9x'"),
    ],
)
def test_a_percentile_out_of_range_is_refused_before_the_spec_is_read(argv, wanted):
    rc, _, err = tcc(*argv)
    assert rc == 2 and wanted in err and "Traceback" not in err, err


def test_the_method_choices_are_the_calibration_methods():
    """The CLI spells the methods out (importing tcc.quant at parse time would load numpy): they must stay the
    table's."""
    from tcc.cli.args import METHOD_CHOICES
    from tcc.quant.scales.methods import AUTO, METHODS

    assert sorted(METHOD_CHOICES) == sorted((AUTO, *METHODS))


def test_a_mistyped_target_or_precision_gets_the_nearest_and_an_aligned_list(tmp_path):
    rc, _, err = tcc("build", TINY, "--target", "arm7", "-o", tmp_path / "b")
    assert rc == 2 and "unknown target 'arm7' (did you mean 'arm-a7'?); known targets:" in err
    rows = {line.split()[0]: line for line in err.splitlines()[1:] if line.strip()}
    assert set(rows) == set(TARGETS)  # the aliases too
    assert len({row.index(TARGETS[name].description) for name, row in rows.items()}) == 1, err  # one column
    rc, _, err = tcc("build", TINY, "--target", "ort", "--precision", "int9", "-o", tmp_path / "b")
    assert rc == 2 and "unknown precision 'int9' (did you mean 'int8'?)" in err
    assert not (tmp_path / "b").exists()


def test_build_help_is_grouped_names_every_target_and_states_defaults():
    rc, out, _ = tcc("build", "--help")
    assert rc == 0
    groups = [
        "what to build and where:",
        "weights (default: seeded random weights, loudly flagged):",
        "INT8 (--precision int8)",
        "TVM targets",
        "TFLite targets:",
        "AX kits (",
    ]
    positions = [out.index(g) for g in groups]
    assert positions == sorted(positions)  # the weights right after what is built, the backends' options last
    flat = " ".join(out.split())
    for name in ("tflite-int", "tflite16-i32", "arm-a53", "arm-a55", "ax650-a55", "ax620e-a55"):
        assert f" {name} " in flat
    assert "samples picked (seeded) (default: 128)" in flat
    assert "(default: 13)" in flat and "(default: 0)" in flat  # --opset, --seed
    assert "--count-instructions (default" not in flat  # a switch's default goes without saying


@pytest.mark.parametrize("shell", ["bash", "zsh", "tcsh"])
def test_completion_script_knows_the_commands_and_options(shell):
    rc, out, _ = tcc("completion", shell)
    assert rc == 0
    words = ("calibrate", "completion", "bash") + (
        ("--precision", "--explain-kernels", "kl+cos") if shell != "tcsh" else ()
    )
    for word in words:  # tcsh's script completes the commands and their choices, not the options
        assert word in out, word
    if shell == "bash":  # the script is valid bash
        subprocess.run(["bash", "-n"], input=out, text=True, check=True)


def _safetensors(path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)


@pytest.mark.parametrize(
    "make, wanted",
    [
        (lambda p: p.write_text("epoch 1 loss 0.3\n"), "not a PyTorch checkpoint: a text file (it starts 'epoch 1"),
        (lambda p: p.write_bytes(b""), "not a PyTorch checkpoint: the file is empty"),
        (_safetensors, "not a PyTorch checkpoint: a safetensors file"),
    ],
)
def test_a_file_that_is_no_checkpoint_is_named_for_what_it_is(tmp_path, make, wanted):
    weights = tmp_path / "w.pt"
    make(weights)
    rc, _, err = tcc("build", TINY, "--target", "onnx", "--weights", weights, "-o", tmp_path / "b")
    assert rc == 2 and err.startswith(f"error: {weights}: {wanted}") and err.count("\n") == 1, err


def test_calibrate_and_explain_refuse_to_replace_output_without_force(tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
    table = tmp_path / "calib.json"
    table.write_text("earlier\n")
    argv = ["calibrate", TINY, "--data", data, "-o", table, "--no-compare", "--report-samples", "2"]
    rc, _, err = tcc(*argv)
    assert rc == 2 and err.strip() == f"error: {table} already exists; pass --force to replace it"
    assert table.read_text() == "earlier\n"
    report = tmp_path / "r.png"
    (tmp_path / "r.histograms.png").write_text("earlier\n")
    table.unlink()
    rc, _, err = tcc(*argv, "--report", report)
    assert rc == 2 and "r.histograms.png already exists" in err and not table.exists()
    rc, _, err = tcc(*argv, "--force")
    assert rc == 0 and table.read_text() != "earlier\n"
    plot = tmp_path / "cam.png"
    plot.write_text("earlier\n")
    rc, _, err = tcc("explain", TINY, "--image", tmp_path / "none.png", "-o", plot)
    assert rc == 2 and "cam.png already exists; pass --force" in err and plot.read_text() == "earlier\n"


@pytest.mark.parametrize("command", ["slide", "report", "bench"])
def test_folder_writers_refuse_a_non_empty_output_without_force(tmp_path, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("x")
    argv = {"slide": [TINY, "--image", tmp_path / "none.png"], "report": [TINY], "bench": [TINY]}[command]
    rc, _, err = tcc(command, *argv, "-o", out)
    assert rc == 2 and err.strip() == f"error: {out} already exists; pass --force to replace it", err


def test_the_python_api_names_the_keyword_not_the_flag(tmp_path):
    from tcc.api import Model
    from tcc.errors import OutputExists

    out = tmp_path / "b"
    out.mkdir()
    (out / "f").write_text("x")
    with pytest.raises(OutputExists, match=r"already exists; pass force=True to replace it"):
        Model.load(str(TINY)).build("onnx", out=out)


def test_the_console_script_has_no_traceback_for_a_mistake():
    done = subprocess.run(
        [sys.executable, "-m", "tcc", "build", str(TINY), "--target", "arm7"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr and "did you mean 'arm-a7'" in done.stderr


def test_no_command_states_an_empty_or_none_default():
    from tcc.cli.parser import COMMANDS

    for command in COMMANDS:
        name = command.__name__.rsplit(".", 1)[1].replace("import_onnx", "import")
        rc, out, _ = tcc(name, "--help")
        flat = " ".join(out.split())
        assert rc == 0 and "(default: )" not in flat and "(default: None)" not in flat, name
