"""What the assembly kernels share (int8/microkernel.py, fp32/a64_tile.py): how TVM links their LLVM IR into a
module, and AArch64's immediate load offsets."""

from __future__ import annotations

IMPORT_PRAGMA = "pragma_import_llvm"  # a loop annotation: LLVM IR TVM links into the module (the kernel's function)


def addressable(offset: int, size: int) -> bool:
    """Whether AArch64's `ldr` of `size` bytes takes this immediate offset: a multiple of the size up to 4095 of
    them (scaled), or any in [-256, 255] (`ldur`)."""
    return (offset % size == 0 and 0 <= offset <= 4095 * size) or -256 <= offset <= 255
