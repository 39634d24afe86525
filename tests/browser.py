"""For the tests of HTML pages (the report, the worker's status page): an HTML structure checker,
headless Chromium, and a reader of the PNG screenshots it writes."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INLINE = {"a", "abbr", "b", "code", "em", "i", "small", "span", "strong"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium with `args` (e.g. "--dump-dom", url); skip the test when it is not
    installed, fail it when CI=true (CI installs Debian's chromium package: .ci/run)."""
    if CHROMIUM is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed; CI installs Debian's chromium package (.ci/run)")
        pytest.skip("chromium not installed (apt-get install --no-install-recommends chromium)")
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, timeout=120, check=True)


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) as an (h, w, 3) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
        elif kind == b"IDAT":
            idat.append(body)
    bpp = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(h, 1 + w * bpp)
    out = np.empty((h, w * bpp), dtype=np.uint8)
    prev = np.zeros(w * bpp, dtype=np.uint8)
    for y in range(h):
        kind, row = raw[y, 0], raw[y, 1:]
        if kind == 0:
            cur = row.copy()
        elif kind == 1:  # Sub: a running sum per channel, modulo 256
            cur = np.cumsum(row.reshape(w, bpp), axis=0, dtype=np.uint8).ravel()
        elif kind == 2:  # Up
            cur = row + prev
        else:  # Average / Paeth depend on the reconstructed left neighbour: byte by byte
            r, up, rec = row.tolist(), prev.tolist(), [0] * (w * bpp)
            for i in range(w * bpp):
                a = rec[i - bpp] if i >= bpp else 0
                b = up[i]
                if kind == 3:
                    rec[i] = (r[i] + ((a + b) >> 1)) & 255
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    rec[i] = (r[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            cur = np.array(rec, dtype=np.uint8)
        out[y] = cur
        prev = cur
    return out.reshape(h, w, bpp)[:, :, :3]


def near(img: np.ndarray, hex_color: str, tolerance: int = 40) -> int:
    """How many pixels of `img` are within `tolerance` (sum of channel differences) of "#RRGGBB"."""
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int32)
    return int((np.abs(img.astype(np.int32) - rgb).sum(axis=2) < tolerance).sum())


class HtmlStructure(HTMLParser):
    """Checks that every non-void element is closed in order; collects tags, attribute names, links
    and the text (`text()`)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.links, self.attributes, self.data = [], [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [k for k, _ in attrs]
        self._separate(tag)
        self.links += [v for k, v in attrs if k in ("src", "href", "xlink:href", "srcset", "action", "data") and v]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [v for k, v in attrs if k in ("src", "href", "xlink:href") and v]

    def handle_data(self, data):
        if not self.stack or self.stack[-1] not in ("style", "script"):
            self.data.append(data)

    def _separate(self, tag):
        if tag not in INLINE:  # a cell, a paragraph, a heading: its text is not glued to the next one
            self.data.append(" ")

    def text(self) -> str:
        """The text a reader sees, whitespace collapsed."""
        return " ".join("".join(self.data).split())

    def handle_endtag(self, tag):
        self._separate(tag)
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()
