"""LLVM code generation of a Relax module's kernels in parallel, and the shared library linked from it.

``tvm.compile`` turns every TIR function of a model into one LLVM module, optimizes it and emits its machine code on
one core (for DDSNet on arm-a7: 1.6 s of codegen, 2.0 s of emission). The kernels do not call one another, so they
split into independent LLVM modules: each part is built and emitted to its object file on its own thread (TVM's FFI
releases the GIL), and the objects are linked into one library, as ``export_library`` links one object per imported
module. What is split, and how, never depends on the machine: the parts are always ``PARTS``, filled by a fixed
rule, so the same model gives the same objects and a byte-identical library on any number of cores.

The Relax side (VM bytecode, constants) is built as ``tvm.relax.build`` builds it; only the TIR build is split.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tcc.errors import BuildError
from tcc.process.phases import phase

PARTS = 4  # per model; on 2 cores two parts run at a time (a part costs ~10 ms of fixed LLVM work)


def partition(weights: dict[str, int], parts: int = PARTS) -> list[list[str]]:
    """Names split into at most `parts` groups of near-equal total weight: heaviest first, each to the lightest
    group (ties: the lower index), names in sorted order within a group. Deterministic for the same input."""
    loads = [0] * parts
    groups: list[list[str]] = [[] for _ in range(parts)]
    for name in sorted(weights, key=lambda n: (-weights[n], n)):
        k = loads.index(min(loads))
        groups[k].append(name)
        loads[k] += weights[name]
    return [sorted(g) for g in groups if g]


def compile_and_export(
    mod: Any, target: Any, pipeline: Any, out_path: Path, fcompile: Callable | None = None, workers: int | None = None
) -> Path:
    """`tvm.compile(mod, target, relax_pipeline=pipeline)` followed by `export_library(out_path, fcompile=...)`,
    with the kernels' LLVM build and object emission spread over `workers` threads (default: the CPU count)."""
    import tvm  # deferred for start-up: loads tvm
    from tvm import relax  # deferred for start-up: loads tvm
    from tvm.relax import vm_build  # deferred for start-up: loads tvm
    from tvm.support import cc  # deferred for start-up: loads tvm

    from .int8 import tir_pipeline  # deferred for start-up: loads tvm

    with phase("compile"):
        with target:
            mod = pipeline(mod) if not isinstance(pipeline, str) else relax.get_pipeline(pipeline)(mod)
        attrs = dict(mod.attrs) if mod.attrs else {}
        if attrs.get("external_mods"):  # offloaded (BYOC) modules: tcc offloads nothing; linking here would drop them
            raise BuildError("TVM: the module has external (offloaded) modules, which tcc's linking does not take")
        builder = relax.ExecBuilder()
        mod = vm_build._vmcodegen(builder, mod, "bytecode")
        tir = vm_build._filter_tir(mod)
    if tir is None:
        raise BuildError("TVM: the model has no kernels to compile")
    funcs = {g.name_hint: tir[g] for g in tir.get_global_vars()}
    # a kernel's printed size is a fair guess of its LLVM time, and cheap to get (docs/notes/build-time.md)
    scripts = {name: f.script() for name, f in funcs.items()}
    groups = partition({name: len(s) for name, s in scripts.items()})
    pipelines = [tir_pipeline.for_kernels(target, (scripts[n] for n in g)) for g in groups]
    with tempfile.TemporaryDirectory(prefix="tcc-codegen-") as work:
        objects = [str(Path(work) / f"lib{i}.o") for i in range(len(groups))]

        def build(i: int):
            part = tvm.IRModule({name: funcs[name] for name in groups[i]}, attrs=tir.attrs)
            lib = tvm.tirx.build(part, target=target, pipeline=pipelines[i])
            lib.write_to_file(objects[i])
            return lib

        with phase("codegen"), ThreadPoolExecutor(max(1, min(len(groups), workers or os.cpu_count() or 1))) as pool:
            libs = list(pool.map(build, range(len(groups))))
        for other in libs[1:]:
            libs[0].import_module(other)
        executable = vm_build._ffi_api.VMLink(
            builder, target, libs[0], [], dict(attrs.get("const_name_to_constant", {}))
        )
        with phase("link"):
            # the VM bytecode and constants, packed into an object as export_library packs a module's imports
            packed = str(Path(work) / "devc.o")
            llvm_target = libs[0].get_function("_get_target_string")()
            tvm.runtime._ffi_api.ModulePackImportsToLLVM(executable, False, llvm_target, "").write_to_file(packed)
            (fcompile or cc.create_shared)(str(out_path), [*objects, packed])
    return out_path
