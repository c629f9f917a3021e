"""`tcc setup` (tcc.backends.tvm.setup): its steps in order, each skipped when done; what it cannot do (Debian
packages without root or with --no-apt) named as the command to run, before anything else; non-TVM targets need
nothing; an unknown target gets the nearest name."""

from __future__ import annotations

import pytest

import tcc
from tcc.backends.tvm import runtime as rt
from tcc.backends.tvm import setup as st
from tcc.errors import BuildError


def test_the_steps_are_a_table_in_order():
    assert [s.name for s in st.STEPS] == ["Debian packages", "Python packages", "runtimes"]


def test_missing_debian_packages_without_apt_name_the_command(monkeypatch):
    monkeypatch.setattr(rt, "missing_apt_packages", lambda targets: ["g++-arm-linux-gnueabihf", "qemu-user"])
    with pytest.raises(rt.ToolchainMissing) as e:
        st._debian_packages(["arm-a7"], st.SetupSettings(apt=False), print)
    assert "apt-get install -y g++-arm-linux-gnueabihf qemu-user" in str(e.value) and "tcc setup" in str(e.value)


def test_every_step_done_installs_and_builds_nothing(monkeypatch):
    ran: list[tuple] = []
    monkeypatch.setattr(rt, "missing_apt_packages", lambda targets: [])
    monkeypatch.setattr(st.shutil, "which", lambda cmd: f"/usr/bin/{cmd}")
    monkeypatch.setattr(st, "_installed", lambda d: {"apache-tvm": rt.TVM_PIN, "apache-tvm-ffi": rt.TVM_FFI_PIN}[d])
    monkeypatch.setattr(st.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(rt, "find_cmake", lambda: "/usr/bin/cmake")
    monkeypatch.setattr(rt, "find_command", lambda cmd: f"/usr/bin/{cmd}")
    monkeypatch.setattr(st.subprocess, "run", lambda *a, **k: ran.append(a))
    monkeypatch.setattr(rt, "ensure_runtime", lambda name, rebuild, log: rt.cache_root() / name)
    monkeypatch.setattr(rt, "runtime_dir", lambda name: rt.cache_root() / name)
    lines: list[str] = []
    folders = st.setup(["arm-a7", "aarch64"], st.SetupSettings(), lines.append)
    assert ran == []  # no apt-get, no pip
    assert set(folders) == {"arm-a7", "aarch64"}
    assert "setup: Debian packages: already installed" in lines
    assert [line.split(" (")[0] for line in lines if line.endswith(" s)")] == [f"setup: {s.name}" for s in st.STEPS]


def test_other_targets_need_nothing_and_a_mistyped_one_gets_the_nearest(monkeypatch):
    lines: list[str] = []
    assert tcc.setup(["ort", "tflite"], log=lines.append) == {}
    assert lines == [
        f"setup: {t} needs no set-up (its runtime is a Python package tcc depends on, or a kit)"
        for t in ("ort", "tflite")
    ]
    with pytest.raises(BuildError, match=r"unknown target 'arm7' \(did you mean 'arm-a7'\?\)"):
        tcc.setup(["arm7"])
