"""Errors in Python's words for Python callers and in the command line's for the command line: the table of flags
(tcc.python_wording) held to the parser, the API and the messages the code raises, and both wordings of errors
raised through the API."""

from __future__ import annotations

import argparse
import ast
import inspect
import re
from dataclasses import fields, is_dataclass

import numpy as np
import pytest
from PIL import Image

import tcc
from tcc.api.commands import TrainRun
from tcc.build import BuildSettings
from tcc.cli.main import main as cli_main
from tcc.cli.parser import build_parser
from tcc.errors import DataError, SpecError, TccError
from tcc.python_wording import COMMAND, FORMS, WORDS, python_wording
from tcc.quant.place.placer import PlaceOptions
from tcc.quant.settings import CalibrationRequest
from tcc.quant.table.rules import RULES
from tcc.slide.options import Options as SlideOptions
from tcc.spec.train_options import BY_NAME as TRAIN_OPTIONS
from tcc.spec.train_options import OPTIONS as TRAIN_OPTION_LIST
from tcc.targets import TARGETS
from tcc.train.qat.options import Options as QatOptions
from tcc.train.qat.options import QatSettings
from tests.helpers import REPO

# flags of other programs that messages quote (`dpkg --add-architecture`, `vips tiffsave --tile --pyramid`)
FOREIGN = {"--add-architecture", "--tile", "--pyramid"}
FLAG = re.compile(r"(?<![\w-])--?[a-z][a-z0-9-]*")
TINY = REPO / "tests" / "specs" / "train_tiny.yaml"


def _parser_actions() -> list[argparse.Action]:
    def walk(parser: argparse.ArgumentParser, seen: set[int]):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if id(sub) not in seen:
                        seen.add(id(sub))
                        yield from walk(sub, seen)
            else:
                yield action

    return list(walk(build_parser(), set()))


def _field_names(record: object) -> set[str]:
    """Every field of a settings record and of the records it holds, at any depth."""
    if not is_dataclass(record) or isinstance(record, type):
        return set()
    names = set()
    for f in fields(record):
        names |= {f.name} | _field_names(getattr(record, f.name))
    return names


def _api_keywords() -> set[str]:
    """Every keyword a Python caller can give: the API's parameters and the settings records' fields."""
    callables = [getattr(tcc, name) for name in tcc.api.__all__]
    callables += [m for cls in (tcc.Model, tcc.Bundle) for _, m in inspect.getmembers(cls, inspect.isfunction)]
    callables += [tcc.Model.load, tcc.Bundle.open]
    names = {p for c in callables if callable(c) for p in inspect.signature(c).parameters}
    records = [BuildSettings("host"), CalibrationRequest(), PlaceOptions(), SlideOptions(), TrainRun()]
    records += [QatSettings(QatOptions())]
    return names | set(TRAIN_OPTIONS) | {n for r in records for n in _field_names(r)}


def test_every_flag_in_the_table_is_the_parsers_and_its_keyword_the_apis():
    flags = {s for a in _parser_actions() for s in a.option_strings}
    assert set(FORMS) - flags == set()
    keywords = _api_keywords()
    named = {flag: re.match(r"\w+", form).group() for flag, form in FORMS.items() if form and form != "{}"}
    assert {flag: k for flag, k in named.items() if k not in keywords} == {}


def test_the_words_taken_as_values_are_the_flags_choices():
    augment = {c for a in _parser_actions() if "--augment" in a.option_strings and a.choices for c in a.choices}
    truth = {
        "--target": set(TARGETS) | set(RULES),
        "--precision": {p for t in TARGETS.values() for p in t.precisions},
        "--device": {"auto", "cpu", "cuda"},  # tcc.spec.train_options' device
        "--augment": augment,
        "--speed": {"ort"},  # tcc.quant.place.placer.check_options
    }
    assert set(WORDS) <= set(truth)
    assert {flag: set(words) - truth[flag] for flag, words in WORDS.items()} == {f: set() for f in WORDS}
    assert truth["--device"] == set(TRAIN_OPTIONS["device"].schema.get("enum", truth["--device"]))


def test_every_training_option_has_its_name_as_keyword():
    for option in TRAIN_OPTION_LIST:
        if option.name != "set":
            assert FORMS[option.flag] in (f"{option.name}={{}}", f"{option.name}=True"), option.flag


def _raised_messages():
    """(file:line, the message's text with its f-string fields as X) of every TccError-like raise outside the
    command line's own package, whose message is written in flags (no cli= wording beside it)."""
    for path in sorted((REPO / "compiler").rglob("*.py")):
        if path.parent.name == "cli":
            continue
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            call = node.exc if isinstance(node, ast.Raise) else None
            if isinstance(call, ast.Call) and call.args and not any(k.arg == "cli" for k in call.keywords):
                yield f"{path.relative_to(REPO)}:{node.lineno}", _text(call.args[0])


def _text(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)  # type: ignore[misc]
    if isinstance(node, ast.BinOp):
        return _text(node.left) + _text(node.right)
    return ""


def test_every_flag_a_raised_message_names_is_in_the_table():
    seen = {}
    for where, text in _raised_messages():
        for flag in FLAG.findall(COMMAND.sub("", text)):  # a command to run is quoted as it is
            seen.setdefault(flag, where)
    assert len(seen) > 45  # the scan sees the messages (54 flags when written)
    assert {f: w for f, w in seen.items() if f not in FORMS and f not in FOREIGN} == {}


@pytest.mark.parametrize(
    ("cli", "python"),
    [
        ("--calib-size 0: must be at least 1", "calib_size=0: must be at least 1"),
        ("pass --weights", "pass weights="),
        ("use --target ort --precision int8|dynamic", "use target='ort', precision='int8' or 'dynamic'"),
        ("give them with --data DIR|FILE.npy", "give them with data=DIR or FILE.npy"),
        ("--augment dihedral turns; use --augment flip", "augment='dihedral' turns; use augment='flip'"),
        ("--workers starts a cluster; with --scheduler the", "workers= starts a cluster; with scheduler= the"),
        ("--set foo: the model has no such parameter", "foo: the model has no such parameter"),
        ("pass --set num_classes=3", "pass num_classes=3"),
        ("--size 224 224, but input", "size=(224, 224), but input"),
        ("(--require-cos)", "(floor=FidelityFloor(cosine=..., required=True))"),
        ("no run folder: give -o RUN or --resume RUN", "no run folder: give output=RUN or resume=RUN"),
        ("--force, --skip-bad or --no-equalization", "force=True, skip_bad=True or equalization=False"),
        ("--scheduler tcp://10.0.0.1:8786: no", "scheduler=tcp://10.0.0.1:8786: no"),
        ("(--calib out/b/calibration.json)", "(calib=out/b/calibration.json)"),
        ("--min-cos 0.999 / --min-worst-cos C", "min_cos=0.999 / min_worst_cos=C"),
        # commands to run are quoted, not translated; other programs' flags and unknown ones stay
        ("recalibrate with `tcc calibrate ... --target tvm`", "recalibrate with `tcc calibrate ... --target tvm`"),
        ("give it: tcc train SPEC --resume runs/a", "give it: tcc train SPEC --resume runs/a"),
        ("`vips tiffsave IN OUT.tiff --tile`; --docs x", "`vips tiffsave IN OUT.tiff --tile`; --docs x"),
        ("non-square, -1 and --unknown-flag", "non-square, -1 and --unknown-flag"),
    ],
)
def test_flags_become_keywords_and_commands_stay(cli, python):
    assert python_wording(cli) == python
    assert TccError(cli).for_cli() == cli and str(TccError(cli)) == python


def test_a_located_error_keeps_its_place_in_both_wordings(tmp_path):
    error = SpecError("--set width: cannot read value 'x'", None)
    error.message += "\n  in block 'b' used at m.yaml:3:4"  # context added as the error travels
    assert str(error) == "width: cannot read value 'x'\n  in block 'b' used at m.yaml:3:4"
    assert error.for_cli().startswith("--set width:")


def test_errors_raised_through_the_api_speak_python_and_the_cli_its_flags(tmp_path, capsys):
    with pytest.raises(SpecError) as spec_error:
        tcc.Model.load(TINY, nosuch=1)
    assert str(spec_error.value).startswith("nosuch: the model has no such parameter")
    assert spec_error.value.for_cli().startswith("--set nosuch: the model has no such parameter")
    model = tcc.Model.load(TINY, num_classes=3)
    data = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with pytest.raises(DataError, match=r"^activation_bits=12: expected one of 8, 16$"):
        model.calibrate(data, activation_bits=12)
    with pytest.raises(DataError) as bits_error:
        model.calibrate(data, target="ort", activation_bits=16)
    said = str(bits_error.value)
    assert said.startswith("activation_bits=16: target rules 'ort' take 8-bit") and "--" not in said
    assert "add activation_bits=8); 16-bit activations: target='tvm' or 'tflite' or " in said
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(DataError, match=r"^level=-1: must be at least 0$"):
        model.slide([tmp_path / "x.png"], tmp_path / "out", segment=True, level=-1)
    # the same mistakes on the command line name the flags
    assert cli_main(["check", str(TINY), "--set", "nosuch=1"]) == 2
    assert "--set nosuch: the model has no such parameter" in capsys.readouterr().err
    np.save(tmp_path / "d.npy", data)
    argv = ["calibrate", str(TINY), "--set", "num_classes=3", "--data", str(tmp_path / "d.npy")]
    assert cli_main([*argv, "--target", "ort", "--activation-bits", "16", "-o", str(tmp_path / "t.json")]) == 2
    assert f"error: {bits_error.value.for_cli()}\n" in capsys.readouterr().err
    assert "add --activation-bits 8); 16-bit activations: --target tvm|tflite|" in bits_error.value.for_cli()
