"""Format-aware mutations of PNG, JPEG and BMP files: their header fields (declared width and height among them),
chunks and segments removed, duplicated, reordered or given wrong lengths, compressed data broken. Each returns the
new bytes and what it did. A PNG chunk's CRC is recomputed unless the mutation is about the CRC, so the change gets
past the CRC check to the decoder."""

from __future__ import annotations

import zlib

from ..mutate import mutate_bytes, pick, pick_weighted

# ---------------------------------------------------------------------------------------------------- PNG
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIZES = (0, 1, 2, 7, 255, 4097, 60_000, 2**31 - 1, 2**32 - 1)
STRAY_CHUNKS = (
    b"abCD",
    b"ABCD",
    b"tEXt",
    b"zTXt",
    b"iCCP",
    b"PLTE",
    b"tRNS",
    b"sBIT",
    b"pHYs",
    b"gAMA",
    b"acTL",
    b"fcTL",
    b"fdAT",
    b"eXIf",
    b"iTXt",
    b"sPLT",
)


def _png_chunks(data: bytes) -> list[list]:
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append([data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]])
        pos += 12 + n
    return chunks


def _png_bytes(chunks, bad_crc: int | None = None, bad_length: tuple | None = None) -> bytes:
    out = bytearray(PNG_SIGNATURE)
    for i, (kind, body) in enumerate(chunks):
        length = bad_length[1] if bad_length and bad_length[0] == i else len(body)
        crc = zlib.crc32(kind + body) ^ (0xDEADBEEF if i == bad_crc else 0)
        out += length.to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")
    return bytes(out)


def _index_of(chunks, kind: bytes, rng) -> int:
    found = [i for i, (k, _) in enumerate(chunks) if k == kind]
    return pick(rng, found) if found else int(rng.integers(len(chunks)))


def mutate_png(data: bytes, rng) -> tuple[bytes, str]:
    chunks = _png_chunks(data)
    if not chunks:
        return mutate_bytes(data, rng)
    what = pick_weighted(
        rng,
        {
            "ihdr_size": 3,
            "ihdr_field": 2,
            "remove": 2,
            "duplicate": 2,
            "swap": 1,
            "stray": 2,
            "length": 1,
            "crc": 1,
            "idat": 2,
            "bomb": 1,
        },
    )
    if what == "ihdr_size":
        i = _index_of(chunks, b"IHDR", rng)
        body = bytearray(chunks[i][1].ljust(13, b"\0"))
        width, height = pick(rng, SIZES), pick(rng, SIZES)
        which = pick(rng, ["width", "height", "both"])
        if which != "height":
            body[0:4] = width.to_bytes(4, "big")
        if which != "width":
            body[4:8] = height.to_bytes(4, "big")
        chunks[i][1] = bytes(body)
        return _png_bytes(chunks), f"png: IHDR {which} -> {width} x {height}"
    if what == "ihdr_field":
        i = _index_of(chunks, b"IHDR", rng)
        body = bytearray(chunks[i][1].ljust(13, b"\0"))
        field, at, values = pick(
            rng,
            [
                ("bit depth", 8, (0, 1, 2, 3, 4, 8, 16, 32, 255)),
                ("color type", 9, (0, 1, 2, 3, 4, 5, 6, 7, 255)),
                ("compression", 10, (1, 255)),
                ("filter", 11, (1, 255)),
                ("interlace", 12, (1, 2, 255)),
            ],
        )
        body[at] = pick(rng, values)
        chunks[i][1] = bytes(body)
        return _png_bytes(chunks), f"png: IHDR {field} -> {body[at]}"
    if what == "remove":
        i = _index_of(chunks, pick(rng, [b"IHDR", b"IDAT", b"IEND", b"PLTE", b"tRNS", b"any"]), rng)
        kind = chunks.pop(i)[0]
        return _png_bytes(chunks), f"png: remove chunk {i} ({kind.decode('latin-1')})"
    if what == "duplicate":
        i = int(rng.integers(len(chunks)))
        j = int(rng.integers(len(chunks) + 1))
        chunks.insert(j, list(chunks[i]))
        return _png_bytes(chunks), f"png: chunk {i} ({chunks[j][0].decode('latin-1')}) copied to {j}"
    if what == "swap":
        i, j = (int(v) for v in rng.integers(len(chunks), size=2))
        chunks[i], chunks[j] = chunks[j], chunks[i]
        return _png_bytes(chunks), f"png: chunks {i} and {j} swapped"
    if what == "stray":
        kind = pick(rng, STRAY_CHUNKS)
        body = rng.integers(256, size=int(rng.integers(0, 40)), dtype="uint8").tobytes()
        j = int(rng.integers(1, len(chunks) + 1))
        chunks.insert(j, [kind, body])
        return _png_bytes(chunks), f"png: {len(body)}-byte {kind.decode()} chunk of noise inserted at {j}"
    if what == "length":
        i = int(rng.integers(len(chunks)))
        length = pick(rng, [0, 1, len(chunks[i][1]) + 1, 2**31 - 1, 2**32 - 1])
        return _png_bytes(chunks, bad_length=(i, length)), f"png: chunk {i} declares length {length}"
    if what == "crc":
        i = int(rng.integers(len(chunks)))
        return _png_bytes(chunks, bad_crc=i), f"png: chunk {i} ({chunks[i][0].decode('latin-1')}) with a bad CRC"
    idat = [i for i, (k, _) in enumerate(chunks) if k == b"IDAT"]
    if not idat:
        return mutate_bytes(data, rng)
    if what == "bomb":  # compressed zeros far past what the header declares: the decoder must stop at its size
        body = zlib.compress(bytes(8 << 20), 9)
        return _png_bytes(
            chunks[: idat[0]] + [[b"IDAT", body]] + chunks[idat[-1] + 1 :]
        ), "png: IDAT replaced by 8 MiB of compressed zeros"
    try:
        raw = zlib.decompress(b"".join(chunks[i][1] for i in idat))
    except zlib.error:
        return mutate_bytes(data, rng)
    raw, said = mutate_bytes(raw, rng, rounds=1)  # filter bytes and pixels, after decompression
    return _png_bytes(
        chunks[: idat[0]] + [[b"IDAT", zlib.compress(raw)]] + chunks[idat[-1] + 1 :]
    ), f"png: decompressed IDAT: {said}"


# ---------------------------------------------------------------------------------------------------- JPEG
_NO_LENGTH = {0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)}


def _jpeg_segments(data: bytes) -> list[list]:
    """[marker, payload] from SOI to the first SOS; everything after the first SOS header is one [None, bytes]."""
    segments, pos = [], 0
    while pos + 2 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in _NO_LENGTH:
            segments.append([marker, b""])
            pos += 2
            continue
        n = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segments.append([marker, data[pos + 4 : pos + 2 + n]])
        pos += 2 + n
        if marker == 0xDA:
            break
    segments.append([None, data[pos:]])
    return segments


def _jpeg_bytes(segments, bad_length: tuple | None = None) -> bytes:
    out = bytearray()
    for i, (marker, payload) in enumerate(segments):
        if marker is None:
            out += payload
        elif marker in _NO_LENGTH:
            out += bytes([0xFF, marker])
        else:
            length = bad_length[1] if bad_length and bad_length[0] == i else len(payload) + 2
            out += bytes([0xFF, marker]) + (length & 0xFFFF).to_bytes(2, "big") + payload
    return bytes(out)


def mutate_jpeg(data: bytes, rng) -> tuple[bytes, str]:
    segments = _jpeg_segments(data)
    if len(segments) < 3:
        return mutate_bytes(data, rng)
    what = pick_weighted(
        rng,
        {
            "sof_size": 3,
            "sof_field": 2,
            "remove": 2,
            "duplicate": 2,
            "length": 1,
            "tables": 2,
            "scan": 2,
            "sos": 1,
            "stray": 1,
        },
    )
    sof = [i for i, (m, _) in enumerate(segments) if m in (0xC0, 0xC1, 0xC2)]
    if what in ("sof_size", "sof_field") and sof:
        i = sof[0]
        body = bytearray(segments[i][1])
        if what == "sof_size" and len(body) >= 5:
            at, name = pick(rng, [(1, "height"), (3, "width")])
            value = pick(rng, [0, 1, 65_535, 16_385, 60_000])
            body[at : at + 2] = value.to_bytes(2, "big")
            segments[i][1] = bytes(body)
            return _jpeg_bytes(segments), f"jpeg: SOF {name} -> {value}"
        if len(body) >= 9:
            at, name, values = pick(
                rng,
                [
                    (0, "precision", (0, 12, 16, 255)),
                    (5, "components", (0, 2, 4, 255)),
                    (7, "sampling", (0x00, 0x44, 0xFF, 0x13)),
                    (8, "table", (3, 4, 255)),
                ],
            )
            body[at] = pick(rng, values)
            segments[i][1] = bytes(body)
            return _jpeg_bytes(segments), f"jpeg: SOF {name} -> {body[at]:#x}"
    if what == "remove":
        i = int(rng.integers(len(segments) - 1))
        marker = segments.pop(i)[0]
        return _jpeg_bytes(segments), f"jpeg: remove segment {i} (FF{marker:02X})"
    if what == "duplicate":
        i, j = int(rng.integers(len(segments) - 1)), int(rng.integers(1, len(segments)))
        segments.insert(j, list(segments[i]))
        return _jpeg_bytes(segments), f"jpeg: segment {i} (FF{segments[j][0]:02X}) copied to {j}"
    if what == "length":
        i = int(rng.integers(1, len(segments) - 1))
        length = pick(rng, [0, 1, 2, 0xFFFF, len(segments[i][1]) + 3, len(segments[i][1])])
        return _jpeg_bytes(segments, bad_length=(i, length)), f"jpeg: segment {i} declares length {length}"
    if what == "tables":
        tables = [i for i, (m, _) in enumerate(segments) if m in (0xDB, 0xC4, 0xDD)] or [1]
        i = pick(rng, tables)
        segments[i][1], said = mutate_bytes(segments[i][1], rng, rounds=1)
        return _jpeg_bytes(segments), f"jpeg: segment {i} (FF{segments[i][0]:02X}): {said}"
    if what == "sos":
        sos = [i for i, (m, _) in enumerate(segments) if m == 0xDA]
        if sos and segments[sos[0]][1]:
            body = bytearray(segments[sos[0]][1])
            at = int(rng.integers(len(body)))
            body[at] = pick(rng, [0, 5, 0x44, 0xFF])
            segments[sos[0]][1] = bytes(body)
            return _jpeg_bytes(segments), f"jpeg: SOS byte {at} -> {body[at]:#x}"
    if what == "stray":
        marker, payload = pick(
            rng, [(0xDD, b"\x00\x00"), (0xDD, b"\x00\x01"), (0xDC, b"\xff\xff"), (0xC8, b""), (0xFE, b"\x00" * 70_000)]
        )
        i = int(rng.integers(1, len(segments)))
        segments.insert(i, [marker, payload[:65_533]])
        return _jpeg_bytes(segments), f"jpeg: stray FF{marker:02X} segment at {i}"
    segments[-1][1], said = mutate_bytes(segments[-1][1], rng)  # the entropy-coded data (and what follows it)
    return _jpeg_bytes(segments), f"jpeg: scan data: {said}"


# ---------------------------------------------------------------------------------------------------- BMP
BMP_FIELDS = {  # name: (offset, bytes, values)
    "file size": (2, 4, (0, 1, 0xFFFFFFFF)),
    "pixel offset": (10, 4, (0, 14, 54, 1078, 0x7FFFFFFF, 0xFFFFFFFF)),
    "header size": (14, 4, (0, 12, 40, 56, 64, 108, 124, 0xFFFFFFFF)),
    "width": (18, 4, (0, 1, 0xFFFFFFFF, 0xFFFFFFF0, 60_000, 0x7FFFFFFF, 0x80000000)),
    "height": (22, 4, (0, 1, 0xFFFFFFFF, 0xFFFFFFF0, 60_000, 0x7FFFFFFF, 0x80000000)),
    "planes": (26, 2, (0, 2, 0xFFFF)),
    "bits per pixel": (28, 2, (0, 1, 2, 3, 4, 8, 15, 16, 24, 32, 64, 0xFFFF)),
    "compression": (30, 4, (0, 1, 2, 3, 4, 5, 6, 0xFFFFFFFF)),
    "image size": (34, 4, (0, 1, 0xFFFFFFFF)),
    "colours used": (46, 4, (0, 1, 256, 257, 0x7FFFFFFF)),
}


def mutate_bmp(data: bytes, rng) -> tuple[bytes, str]:
    if len(data) < 54 or pick(rng, range(5)) == 0:
        return mutate_bytes(data, rng)
    out, said = bytearray(data), []
    for _ in range(int(rng.integers(1, 3))):
        name = pick(rng, list(BMP_FIELDS))
        at, size, values = BMP_FIELDS[name]
        value = pick(rng, values) & ((1 << 8 * size) - 1)
        out[at : at + size] = value.to_bytes(size, "little")
        said.append(f"{name} -> {value:#x}")
    return bytes(out), "bmp: " + ", ".join(said)


def rle8_bmp(pixels) -> bytes:
    """An 8-bit grey palette BMP with RLE8 compression (Pillow writes none): runs of equal pixels, row by row from
    the bottom, each row ended by 00 00 and the bitmap by 00 01."""
    height, width = pixels.shape
    body = bytearray()
    for row in pixels[::-1]:
        x = 0
        while x < width:
            run = 1
            while x + run < width and run < 255 and row[x + run] == row[x]:
                run += 1
            body += bytes([run, int(row[x])])
            x += run
        body += b"\x00\x00"
    body += b"\x00\x01"
    palette = b"".join(bytes([g, g, g, 0]) for g in range(256))
    offset = 14 + 40 + len(palette)
    header = b"BM" + (offset + len(body)).to_bytes(4, "little") + bytes(4) + offset.to_bytes(4, "little")
    info = (
        (40).to_bytes(4, "little")
        + width.to_bytes(4, "little")
        + height.to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + (8).to_bytes(2, "little")
        + (1).to_bytes(4, "little")
        + len(body).to_bytes(4, "little")
        + bytes(8)
        + (256).to_bytes(4, "little")
        + bytes(4)
    )
    return header + info + palette + bytes(body)


MUTATORS = {".png": mutate_png, ".jpg": mutate_jpeg, ".bmp": mutate_bmp}
