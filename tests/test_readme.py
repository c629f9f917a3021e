"""The README's command examples, so the documentation cannot drift from the program.

Every `tcc` command in the README's shell blocks parses with tcc's own argument parser (the subcommand and every
flag exist), and the spec, fixture and repository paths it names exist. The "Using it" block runs as written (from
the repository root, like a user would), with the results its comments promise, and the "new block without Python"
example (GhostNet's Ghost module) gives exactly the output the README prints, its error message included. The slow
examples (builds for every target, calibration, training, benchmarks) are only parsed: the backend tests run them.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from tcc.cli.main import build_parser, main as cli

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
FIXTURES = REPO.parent / "shared" / "fixtures" / "ddsnet"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures/ddsnet is not beside the checkout")
REPO_PATHS = ("spec/", "zoo/", "tests/", "tools/", "../shared/")


def shell_blocks(text: str) -> list[tuple[str, str]]:
    """(the heading above, the text) of every ```sh / ```bash block."""
    blocks = []
    for m in re.finditer(r"^```(?:sh|bash)\n(.*?)^```", text, re.M | re.S):
        headings = re.findall(r"^#+ (.+)$", text[:m.start()], re.M)
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
                    tokens = tokens[:tokens.index(stop)]
            tokens = [t.split("|")[0] for t in tokens]
            if tokens and Path(tokens[0]).name == "tcc":
                out.append((part.strip(), tokens[1:]))
            elif "-m" in tokens and tokens[tokens.index("-m") + 1:][:1] == ["tcc"]:
                out.append((part.strip(), tokens[tokens.index("-m") + 2:]))
    return out


ALL = [(heading, line, argv) for heading, block in shell_blocks(README) for line, argv in commands(block)]


def test_the_readme_has_its_examples():
    assert len(ALL) >= 40
    assert {argv[0] for _, _, argv in ALL} >= {"check", "predict", "build", "calibrate", "diff", "bench", "report",
                                               "train", "slide", "explain", "golden", "schema"}


@pytest.mark.parametrize("heading,line,argv", ALL, ids=[f"{i}:{a[0]}" for i, (_, _, a) in enumerate(ALL)])
def test_every_command_parses_and_its_paths_exist(heading, line, argv):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"README ({heading}): `{line}` does not parse: {err.getvalue().strip()}")
    for token in argv:
        for value in token.split("=", 1)[-1:]:
            if value.startswith(REPO_PATHS) and not value.startswith("tests/golden/"):
                assert (REPO / value).exists(), f"README ({heading}): `{line}` names {value}, which does not exist"


USING_IT = next(block for heading, block in shell_blocks(README) if heading == "Using it")


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
        k: v for k, v in json.loads(promised).items() if k != "logits"}
    assert results["schema "] == (REPO / "spec" / "schema" / "tcc.schema.json").read_text()


@needs_fixtures
def test_weights_example_prints_what_the_readme_shows(monkeypatch, capsys):
    """The weights paragraph's session: a DDSNet checkpoint for 2 classes with the plain command, from the root."""
    m = re.search(r"^```\n\$ \.venv/bin/tcc (predict spec/ddsnet\.yaml [^\n]*)\n(.*?)\n```", README, re.M | re.S)
    monkeypatch.chdir(REPO)
    assert cli(shlex.split(m.group(1))) == 0
    out, err = capsys.readouterr()
    assert (err + out).strip().splitlines() == m.group(2).splitlines()  # stderr comes first, as in a terminal


def test_zoo_table_is_what_tools_zoo_table_prints(capsys):
    """README's zoo table is tools/zoo_table.py's output (every number asserted against torchvision elsewhere)."""
    import runpy

    runpy.run_path(str(REPO / "tools" / "zoo_table.py"), run_name="zoo_table").get("main")()
    table = capsys.readouterr().out
    assert table in README


def yaml_block(first_line: str) -> str:
    m = re.search(r"^```yaml\n(" + re.escape(first_line) + r"\n.*?)^```", README, re.M | re.S)
    return m.group(1)


def test_new_block_example_prints_what_the_readme_shows(tmp_path, monkeypatch, capsys):
    """The Ghost module example: the two files as the README shows them, `tcc check` on them, and on the mistake it
    describes (ghost2 with out: 31), print exactly the README's lines."""
    block = yaml_block("# my_blocks/ghost_module.yaml")
    model = yaml_block("# ghostnet_tiny.yaml")
    (tmp_path / "my_blocks").mkdir()
    (tmp_path / "my_blocks" / "ghost_module.yaml").write_text(block)
    (tmp_path / "ghostnet_tiny.yaml").write_text(model)
    bad = model.replace("{id: ghost2, block: ghost_module, out: 32,", "{id: ghost2, block: ghost_module, out: 31,")
    assert bad != model
    (tmp_path / "bad.yaml").write_text(bad)
    shown = re.search(r"^```\n\$ \.venv/bin/tcc check ghostnet_tiny\.yaml \| tail -1\n(.*?)\n\$ \.venv/bin/tcc check "
                      r"bad\.yaml[^\n]*\n(.*?)\n```", README, re.M | re.S)
    monkeypatch.chdir(tmp_path)
    assert cli(["check", "ghostnet_tiny.yaml"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == shown.group(1)
    assert cli(["check", "bad.yaml"]) == 2
    assert capsys.readouterr().err.strip() == shown.group(2)
