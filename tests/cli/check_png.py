"""Checks that a file is a valid PNG: the signature, every chunk's CRC-32,
IHDR first (and its size, when given), IDAT data that inflate (zlib, with its
Adler-32) to exactly height rows of 1 filter byte + width pixels, IEND last.

    check_png.py FILE [WIDTH HEIGHT]
"""
import struct
import sys
import zlib


def main():
    path = sys.argv[1]
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "bad PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        assert pos + 12 <= len(data), "truncated chunk"
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert len(body) == length, "truncated chunk body"
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in chunk {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND", "IHDR must come first, IEND last"
    width, height, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color, comp, filt, interlace) == (8, 2, 0, 0, 0), "expected 8-bit RGB"
    if len(sys.argv) >= 4:
        assert (width, height) == (int(sys.argv[2]), int(sys.argv[3])), \
            f"size {width}x{height}, expected {sys.argv[2]}x{sys.argv[3]}"
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width), "image data of the wrong size"
    rows = [raw[y * (1 + 3 * width)] for y in range(height)]
    assert all(r <= 4 for r in rows), "bad filter byte"
    pixels = set(raw[y * (1 + 3 * width) + 1 + 3 * x: y * (1 + 3 * width) + 4 + 3 * x]
                 for y in range(0, height, 7) for x in range(0, width, 5))
    assert len(pixels) > 3, "the image is (nearly) blank"
    print(f"{path}: valid PNG, {width}x{height}, {len(chunks)} chunks")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"{sys.argv[1]}: {e}", file=sys.stderr)
        sys.exit(1)
