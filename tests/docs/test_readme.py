"""The command examples of the README and of every docs page, so the documentation cannot drift from the program.

Every `tcc` command in the shell blocks of README.md and of every docs/**/*.md page parses with tcc's own argument
parser (the subcommand and every flag exist), and the spec, fixture and repository paths it names exist; a command
shown on several pages is checked once, where it first appears (README first, then the pages in path order). The
README's "Using it" block runs as written (from the repository root, like a user would), with the results its
comments promise; the weights session and the "new block without Python" example (GhostNet's Ghost module, in
docs/spec-language.md) give exactly the output the page prints, its error message included; the zoo table
(docs/zoo.md) is what tools/zoo_table.py prints. The slow examples (builds for every target, calibration, training,
benchmarks) are only parsed: the backend tests run them.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from tcc.cli.main import main as cli
from tcc.cli.parser import build_parser
from tests.helpers import REPO
from tests.helpers.marks import needs_fixtures

README = (REPO / "README.md").read_text(encoding="utf-8")
# README first, then every docs page in path order: a command's first appearance is where it is checked
PAGES = {
    "README.md": README,
    **{p.relative_to(REPO).as_posix(): p.read_text(encoding="utf-8") for p in sorted((REPO / "docs").rglob("*.md"))},
}
REPO_PATHS = ("spec/", "zoo/", "tests/", "tools/", "../shared/")


def shell_blocks(text: str) -> list[tuple[str, str]]:
    """(the heading above, the text) of every ```sh / ```bash block."""
    blocks = []
    for m in re.finditer(r"^```(?:sh|bash)\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        headings = re.findall(r"^#+ (.+)$", text[: m.start()], re.MULTILINE)
        blocks.append((headings[-1] if headings else "", m.group(1)))
    return blocks


def commands(block: str) -> list[tuple[str, list[str]]]:
    """(the line as written, tcc's argv) for each tcc command of a block; `NAME=value` lines set variables that
    later commands use ($W), `a|b` alternatives take the first, `[...]` optional arguments are left out, and
    output redirections and pipes end the command."""
    out, env = [], {}
    for line in block.replace("\\\n", " ").splitlines():
        for part in re.split(r";\s+", line):
            assign = re.match(r"^\s*([A-Za-z_]\w*)=(.*)$", part)
            if assign:
                env[assign.group(1)] = shlex.split(assign.group(2), comments=True)[0]
                continue
            expanded = re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda v: env.get(v.group(1), v.group(0)), part)
            expanded = re.sub(r"\[[^\]]*\]", "", expanded)
            tokens = shlex.split(expanded, comments=True)
            for stop in (">", "|", ">>"):
                if stop in tokens:
                    tokens = tokens[: tokens.index(stop)]
            tokens = [t.split("|")[0] for t in tokens]
            if tokens and Path(tokens[0]).name == "tcc":
                out.append((part.strip(), tokens[1:]))
            elif "-m" in tokens and tokens[tokens.index("-m") + 1 :][:1] == ["tcc"]:
                out.append((part.strip(), tokens[tokens.index("-m") + 2 :]))
    return out


def page_commands() -> list[tuple[str, str, str, list[str]]]:
    """(page, heading, line, argv) of every tcc command of every page, each distinct argv once: where it first
    appears (a command that the README's tour and a docs page both show is parsed once)."""
    seen, out = set(), []
    for page, text in PAGES.items():
        for heading, block in shell_blocks(text):
            for line, argv in commands(block):
                if tuple(argv) not in seen:
                    seen.add(tuple(argv))
                    out.append((page, heading, line, argv))
    return out


ALL = page_commands()


def test_the_docs_have_their_examples():
    assert len(ALL) >= 40
    assert {argv[0] for *_, argv in ALL} >= {
        "check",
        "predict",
        "build",
        "calibrate",
        "diff",
        "bench",
        "report",
        "train",
        "slide",
        "explain",
        "golden",
        "schema",
        "ops",
    }
    pages = {page for page, *_ in ALL}
    assert {
        "README.md",
        "docs/int8.md",
        "docs/golden.md",
        "docs/bench.md",
        "docs/train-slide-explain.md",
        "docs/targets/ort.md",
        "docs/targets/tvm.md",
        "docs/targets/tflite.md",
        "docs/targets/ax.md",
    } <= pages, pages


@pytest.mark.parametrize("page,heading,line,argv", ALL, ids=[f"{p}:{i}:{a[0]}" for i, (p, _, _, a) in enumerate(ALL)])
def test_every_command_parses_and_its_paths_exist(page, heading, line, argv):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{page} ({heading}): `{line}` does not parse: {err.getvalue().strip()}")
    for token in argv:
        for value in token.split("=", 1)[-1:]:
            if value.startswith(REPO_PATHS) and not value.startswith("tests/golden/"):
                assert (REPO / value).exists(), f"{page} ({heading}): `{line}` names {value}, which does not exist"


def search(pattern: str) -> re.Match:
    """The first match of a multi-line pattern on any page (README first)."""
    for text in PAGES.values():
        m = re.search(pattern, text, re.MULTILINE | re.DOTALL)
        if m:
            return m
    raise AssertionError(f"no page shows {pattern!r}")


USING_IT = next(block for text in PAGES.values() for heading, block in shell_blocks(text) if heading == "Using it")


@needs_fixtures
def test_using_it_runs_as_written(monkeypatch, capsys):
    """The first examples a user tries, from the repository root: each exits 0 and gives what its comment says."""
    monkeypatch.chdir(REPO)
    results = {}
    for line, argv in commands(USING_IT):
        rc = cli(argv)
        out, err = capsys.readouterr()
        assert rc == 0, f"`{line}` failed: {err}"
        results[argv[0] + " " + " ".join(a for a in argv[1:] if a.endswith((".yaml", "--json")))] = out
    assert "params 189,870" in results["check spec/ddsnet.yaml"]
    assert json.loads(results["check spec/fastnet.yaml --json"])["params"] == 218_534
    predicted = json.loads(results["predict spec/ddsnet.yaml --json"])
    promised = re.search(r'# (\{"logits": \[\.\.\.\], .*\})', USING_IT).group(1).replace("[...]", "null")
    assert {k: v for k, v in predicted.items() if k != "logits"} == {
        k: v for k, v in json.loads(promised).items() if k != "logits"
    }
    assert results["schema "] == (REPO / "spec" / "schema" / "tcc.schema.json").read_text()


@needs_fixtures
def test_weights_example_prints_what_the_readme_shows(monkeypatch, capsys):
    """The weights session (docs/index.md): a DDSNet checkpoint for 2 classes with the plain command, from the root."""
    m = search(r"^```\n\$ \.venv/bin/tcc (predict spec/ddsnet\.yaml [^\n]*)\n(.*?)\n```")
    monkeypatch.chdir(REPO)
    assert cli(shlex.split(m.group(1))) == 0
    out, err = capsys.readouterr()
    *notes, printed = (err + out).strip().splitlines()  # stderr comes first, as in a terminal
    *promised_notes, promised = m.group(2).splitlines()
    assert notes == promised_notes
    # The logits as the FP32 rule's scale-aware atol (1e-5 of the output's scale, tcc.tolerance): PyTorch's CPU
    # kernels sum in another order on AVX-512 than on AVX2 (measured: 1.8e-7 / 1.9 apart), the class is the same.
    got, want = json.loads(printed), json.loads(promised)
    assert got["class"] == want["class"]
    assert got["logits"] == pytest.approx(want["logits"], abs=1e-5 * max(1.0, *map(abs, want["logits"])))


def test_zoo_table_is_what_tools_zoo_table_prints(capsys):
    """The zoo table (docs/zoo.md) is tools/zoo_table.py's output (every number asserted against torchvision
    elsewhere)."""
    import runpy

    runpy.run_path(str(REPO / "tools" / "zoo_table.py"), run_name="zoo_table").get("main")()
    table = capsys.readouterr().out
    assert any(table in text for text in PAGES.values()), "no page shows tools/zoo_table.py's table"


def yaml_block(first_line: str) -> str:
    return search(r"^```yaml\n(" + re.escape(first_line) + r"\n.*?)^```").group(1)


def test_new_block_example_prints_what_the_readme_shows(tmp_path, monkeypatch, capsys):
    """The Ghost module example (docs/spec-language.md): the two files as the page shows them, `tcc check` on them,
    and on the mistake it describes (ghost2 with out: 31), print exactly the page's lines."""
    block = yaml_block("# my_blocks/ghost_module.yaml")
    model = yaml_block("# ghostnet_tiny.yaml")
    (tmp_path / "my_blocks").mkdir()
    (tmp_path / "my_blocks" / "ghost_module.yaml").write_text(block)
    (tmp_path / "ghostnet_tiny.yaml").write_text(model)
    bad = model.replace("{id: ghost2, block: ghost_module, out: 32,", "{id: ghost2, block: ghost_module, out: 31,")
    assert bad != model
    (tmp_path / "bad.yaml").write_text(bad)
    shown = search(
        r"^```\n\$ \.venv/bin/tcc check ghostnet_tiny\.yaml \| tail -1\n(.*?)\n\$ \.venv/bin/tcc check "
        r"bad\.yaml[^\n]*\n(.*?)\n```"
    )
    monkeypatch.chdir(tmp_path)
    assert cli(["check", "ghostnet_tiny.yaml"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == shown.group(1)
    assert cli(["check", "bad.yaml"]) == 2
    assert capsys.readouterr().err.strip() == shown.group(2)


def test_attention_variant_example_prints_what_the_page_shows(tmp_path, monkeypatch, capsys):
    """The worked example of a new attention variant (docs/spec-language.md): the toy model as the page shows it,
    written with the zoo's separable_self_attention block alone, prints the page's `tcc check` lines and builds
    for ONNX Runtime with its self-check passing."""
    model = yaml_block("# toy_separable_attention.yaml")
    (tmp_path / "toy_separable_attention.yaml").write_text(model)
    shown = search(
        r"^```\n\$ \.venv/bin/tcc check toy_separable_attention\.yaml \| grep -E \"attn\|nodes\"\n(.*?)\n```"
    )
    monkeypatch.chdir(tmp_path)
    assert cli(["check", "toy_separable_attention.yaml"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if re.search("attn|nodes", line)]
    assert printed == shown.group(1).splitlines()
    assert cli(["build", "toy_separable_attention.yaml", "--target", "ort", "-o", "out/toy-ort"]) == 0
    assert "-> passed" in capsys.readouterr().out
