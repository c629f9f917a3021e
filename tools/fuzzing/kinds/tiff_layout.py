"""A TIFF's image file directories (IFDs) located in its bytes, classic and BigTIFF, SubIFDs included, and the
mutations that use them: a tag's value (declared sizes, tile and strip offsets and byte counts, SubIFD offsets), an
entry's type or count, an IFD's entry count, the chain of next-IFD offsets (loops among them), the header."""

from __future__ import annotations

from dataclasses import dataclass

from ..mutate import mutate_bytes, pick, pick_weighted

TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
TAG_NAMES = {
    254: "NewSubfileType",
    256: "ImageWidth",
    257: "ImageLength",
    258: "BitsPerSample",
    259: "Compression",
    262: "Photometric",
    273: "StripOffsets",
    277: "SamplesPerPixel",
    278: "RowsPerStrip",
    279: "StripByteCounts",
    284: "PlanarConfiguration",
    317: "Predictor",
    322: "TileWidth",
    323: "TileLength",
    324: "TileOffsets",
    325: "TileByteCounts",
    330: "SubIFDs",
    338: "ExtraSamples",
    339: "SampleFormat",
    347: "JPEGTables",
}
MAX_IFDS = 64


@dataclass(frozen=True)
class Entry:
    at: int  # where the 12 (20) bytes of the entry start
    tag: int
    type: int
    count: int
    value_at: int  # where the value starts: inside the entry, or where its offset points


@dataclass(frozen=True)
class Ifd:
    at: int
    entries: tuple[Entry, ...]
    next_at: int  # where the next-IFD offset is written


@dataclass(frozen=True)
class Layout:
    order: str  # "little" | "big"
    big: bool  # BigTIFF
    ifds: tuple[Ifd, ...]

    @property
    def offset_size(self) -> int:
        return 8 if self.big else 4


def _int(data: bytes, at: int, size: int, order: str) -> int:
    return int.from_bytes(data[at : at + size], order)


def read_layout(data: bytes) -> Layout | None:
    """The IFDs reachable from the header (next offsets and SubIFDs), each once; None when the header is not a
    TIFF's."""
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return None
    order = "little" if data[:2] == b"II" else "big"
    big = _int(data, 2, 2, order) == 43
    size = 8 if big else 4
    todo, seen, ifds = [_int(data, 8 if big else 4, size, order)], set(), []
    while todo and len(ifds) < MAX_IFDS:
        at = todo.pop(0)
        if at in seen or not 0 < at < len(data):
            continue
        seen.add(at)
        count_size, entry_size = (8, 20) if big else (2, 12)
        n = _int(data, at, count_size, order)
        first = at + count_size
        if first + n * entry_size + size > len(data):
            continue
        entries = []
        for i in range(n):
            e = first + i * entry_size
            tag, kind = _int(data, e, 2, order), _int(data, e + 2, 2, order)
            count = _int(data, e + 4, size, order)
            inline = count * TYPE_SIZES.get(kind, 1) <= size
            value_at = e + 4 + size if inline else _int(data, e + 4 + size, size, order)
            entries.append(Entry(e, tag, kind, count, value_at))
            if tag == 330:  # SubIFDs: more IFDs to visit
                step = 8 if kind in (16, 18) else 4
                todo += [_int(data, value_at + j * step, step, order) for j in range(min(count, 16))]
        next_at = first + n * entry_size
        ifds.append(Ifd(at, tuple(entries), next_at))
        todo.append(_int(data, next_at, size, order))
    return Layout(order, big, tuple(ifds))


def _edge_values(value: int, size: int, file_size: int) -> list[int]:
    return [
        0,
        1,
        2,
        3,
        7,
        8,
        15,
        17,
        255,
        256,
        65_535,
        2**31 - 1,
        2**32 - 1,
        file_size,
        file_size + 100,
        value + 1,
        max(value - 1, 0),
        value * 2,
        value // 2,
        (1 << 8 * size) - 1,
    ]


def _write(data: bytearray, at: int, value: int, size: int, order: str) -> None:
    if at >= 0 and at + size <= len(data):
        data[at : at + size] = (value & ((1 << 8 * size) - 1)).to_bytes(size, order)


def mutate_tiff(data: bytes, rng) -> tuple[bytes, str]:
    layout = read_layout(data)
    if layout is None or not layout.ifds:
        return mutate_bytes(data, rng)
    out, order, size = bytearray(data), layout.order, layout.offset_size
    ifd_index = int(rng.integers(len(layout.ifds)))
    ifd = layout.ifds[ifd_index]
    what = pick_weighted(
        rng,
        {
            "tag_value": 6,
            "entry_type": 1,
            "entry_count": 1,
            "entry_tag": 1,
            "ifd_count": 1,
            "next_ifd": 2,
            "header": 1,
            "ifd_bytes": 1,
            "truncate": 1,
            "bytes": 1,
        },
    )
    if what.startswith("entry") or what == "tag_value":
        interesting = [e for e in ifd.entries if e.tag in TAG_NAMES]
        if not (interesting or ifd.entries):
            return mutate_bytes(data, rng)
        entry = pick(rng, interesting if interesting and rng.random() < 0.85 else list(ifd.entries))
        name = f"IFD {ifd_index} {TAG_NAMES.get(entry.tag, entry.tag)}"
        if what == "tag_value":
            step = TYPE_SIZES.get(entry.type, 4)
            element = int(rng.integers(max(1, min(entry.count, 64))))
            at = entry.value_at + element * step
            old = _int(data, at, min(step, 8), order)
            value = pick(rng, _edge_values(old, min(step, 8), len(data)))
            _write(out, at, value, min(step, 8), order)
            return bytes(out), f"tiff: {name}[{element}]: {old} -> {value}"
        if what == "entry_type":
            value = pick(rng, [0, 1, 2, 3, 4, 5, 13, 16, 99, 0xFFFF])
            _write(out, entry.at + 2, value, 2, order)
            return bytes(out), f"tiff: {name} type {entry.type} -> {value}"
        if what == "entry_count":
            value = pick(rng, [0, 1, 2, entry.count + 1, 2**31, 2**32 - 1, (1 << 8 * size) - 1])
            _write(out, entry.at + 4, value, size, order)
            return bytes(out), f"tiff: {name} count {entry.count} -> {value}"
        other = pick(rng, [e.tag for e in ifd.entries] + [0, 1, 65_535, 330, 324, 273])
        _write(out, entry.at, other, 2, order)
        return bytes(out), f"tiff: {name} tag -> {other}"
    if what == "ifd_count":
        value = pick(rng, [0, 1, len(ifd.entries) - 1, len(ifd.entries) + 1, 0xFFFF])
        _write(out, ifd.at, value, 8 if layout.big else 2, order)
        return bytes(out), f"tiff: IFD {ifd_index} entry count {len(ifd.entries)} -> {value}"
    if what == "next_ifd":
        targets = {
            "itself": ifd.at,
            "the first IFD": layout.ifds[0].at,
            "another IFD": pick(rng, layout.ifds).at,
            "nowhere": 0,
            "past the end": len(data) + 8,
            "offset 1": 1,
            "an odd offset": ifd.at + 3,
        }
        name = pick(rng, sorted(targets))
        _write(out, ifd.next_at, targets[name], size, order)
        return bytes(out), f"tiff: IFD {ifd_index}'s next IFD -> {name}"
    if what == "header":
        field = pick(rng, ["magic", "first IFD", "byte order"])
        if field == "magic":
            _write(out, 2, pick(rng, [0, 42, 43, 0x2B00, 0xFFFF]), 2, order)
        elif field == "first IFD":
            _write(out, 8 if layout.big else 4, pick(rng, [0, 1, 8, len(data), 2**31 - 1]), size, order)
        else:
            out[:2] = b"MM" if order == "little" else b"II"
        return bytes(out), f"tiff: header {field} changed"
    if what == "ifd_bytes":
        end = ifd.next_at + size
        region, said = mutate_bytes(bytes(out[ifd.at : end]), rng, rounds=1)
        return bytes(out[: ifd.at]) + region[: end - ifd.at].ljust(end - ifd.at, b"\0") + bytes(
            out[end:]
        ), f"tiff: IFD {ifd_index}: {said}"
    if what == "truncate":
        at = int(rng.integers(len(data)))
        return data[:at], f"tiff: truncate to {at} of {len(data)} bytes"
    return mutate_bytes(data, rng)
