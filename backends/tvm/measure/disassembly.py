"""Executed blocks read as LLVM assembly: qemu gives each instruction's encoding, and LLVM's disassembler
(``llvm-mc``) reads them in the instruction set they were executed in, in LLVM's own syntax, which its scheduling
models (``llvm-mca``) then price.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from .blocks import Block
from .cycle_models import CycleModel

_SENTINEL = {  # an undefined instruction after each instruction: its decoding delimits the instructions' texts
    "aarch64": ("0xef 0xbe 0x00 0x00", "udf #48879"),
    "armv7a": ("0xff 0xee 0xfb 0xe7", "udf #48879"),
    "thumbv7a": ("0xef 0xde", "udf #239"),
}


def _disassemble(encodings: list[str], triple: str, mattr: str) -> list[str | None] | None:
    """LLVM's text of each encoding (hex, memory order), None where LLVM cannot decode it; None for all where the
    reading lost its place (an undecodable T32 halfword can swallow the delimiter)."""
    sentinel, sentinel_text = _SENTINEL[triple]
    lines = []
    for enc in encodings:
        lines += [" ".join(f"0x{enc[i : i + 2]}" for i in range(0, len(enc), 2)), sentinel]
    proc = subprocess.run(
        ["llvm-mc", "--disassemble", f"-triple={triple}", f"-mattr={mattr}"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
    )
    texts: list[str | None] = []
    current: str | None = None
    for line in proc.stdout.splitlines():
        if not line.startswith("\t") or line.startswith("\t."):
            continue
        text = " ".join(line.split())
        if text == sentinel_text:
            texts.append(current)
            current = None
        else:
            current = text
    return texts if len(texts) == len(encodings) else None


def _read(blocks: list[Block], triple: str, mattr: str) -> dict[Block, list[str | None]]:
    """Each block read in one state: all at once, else block by block where the reading lost its place."""
    flat = _disassemble([e for b in blocks for e in b.encodings], triple, mattr)
    if flat is None:
        if len(blocks) == 1:
            return {blocks[0]: [None] * len(blocks[0].encodings)}
        half = len(blocks) // 2
        return _read(blocks[:half], triple, mattr) | _read(blocks[half:], triple, mattr)
    out, at = {}, 0
    for b in blocks:
        out[b] = flat[at : at + len(b.encodings)]
        at += len(b.encodings)
    return out


def _mnemonic(text: str | None) -> str:
    return (text or "").split(" ", 1)[0].split(".", 1)[0].lower()


@dataclass(frozen=True)
class Reading:
    """A block's instructions as LLVM assembly (None: not decodable), in the instruction set LLVM read it as."""

    triple: str  # "aarch64", "armv7a" (A32) or "thumbv7a" (T32)
    texts: tuple[str | None, ...]


def decode(blocks: Iterable[Block], model: CycleModel) -> dict[Block, Reading]:
    """Each block as LLVM assembly. ARMv7 code is A32 or T32: a block with a 2-byte instruction is T32; otherwise
    A32 where its A32 reading names at least half the instructions as qemu did (A32 is read safely: every
    instruction is 4 bytes)."""
    blocks = list(blocks)
    mattr = _DECODE_MATTR[model.arch]
    if model.arch == "aarch64":
        return {b: Reading("aarch64", tuple(t)) for b, t in _read(blocks, "aarch64", mattr).items()}
    wide = [b for b in blocks if all(len(e) == 8 for e in b.encodings)]
    arm = {
        b: Reading("armv7a", tuple(texts))
        for b, texts in (_read(wide, "armv7a", mattr) if wide else {}).items()
        if 2 * sum(_mnemonic(t) == _mnemonic(q) for t, q in zip(texts, b.texts)) >= len(texts)
    }
    thumb = [b for b in blocks if b not in arm]
    return arm | {
        b: Reading("thumbv7a", tuple(t)) for b, t in (_read(thumb, "thumbv7a", mattr) if thumb else {}).items()
    }


_DECODE_MATTR = {  # decode everything the core might execute; pricing uses the model's own features
    "aarch64": "+v8.5a,+neon,+dotprod,+fullfp16,+rcpc,+crc,+aes,+sha2,+sha3,+lse,+i8mm,+bf16",
    "armv7": "+neon,+vfp4,+hwdiv,+hwdiv-arm",
}
