"""Read a TensorFlow-1 checkpoint (a "tensor bundle") with numpy and the standard library.

A bundle ``<prefix>.index`` + ``<prefix>.data-0000N-of-0000M``: the index is an SSTable (LevelDB's
table format: data blocks of prefix-compressed key/value entries with a restart array, an index
block of block handles, a 48-byte footer ending in a magic number); each value is a serialized
``BundleEntryProto`` (dtype, shape, shard, offset, size, masked crc32c) locating a tensor's raw
little-endian bytes in a data shard; the empty key holds the ``BundleHeaderProto``. Every block
and every tensor is checked against its crc32c, so a truncated or corrupt file is an error, never
a silently wrong weight. No TensorFlow, no protobuf, nothing unpickled.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mirprobe.errors import UserError

MAGIC = 0xDB4775248B80FB57
FOOTER = 48
#: TensorFlow DataType enum → numpy dtype (the types a checkpoint of weights holds).
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
          9: np.int64, 10: np.bool_, 19: np.float16}


class BundleError(ValueError):
    """A malformed bundle; :func:`read_bundle` turns it into a one-line :class:`UserError`."""


# --------------------------------------------------------------------------- crc32c

def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1).astype(np.uint32)
    return table


_TABLE = _crc_table()
_LANES = 1024


def _apply(cols: list[int], v: int) -> int:
    """A GF(2) 32×32 matrix (given by the images of the 32 bits) times the vector ``v``."""
    out = 0
    for bit in range(32):
        if v >> bit & 1:
            out ^= cols[bit]
    return out


def _zeros_map(n: int) -> list[int]:
    """The map a raw crc register undergoes over ``n`` zero bytes (linear: square and multiply)."""
    step = [int(_TABLE[(1 << bit) & 0xFF]) ^ ((1 << bit) >> 8) for bit in range(32)]  # one byte
    out = [1 << bit for bit in range(32)]
    while n:
        if n & 1:
            out = [_apply(step, c) for c in out]
        step = [_apply(step, c) for c in step]
        n >>= 1
    return out


def crc32c(data: bytes | np.ndarray) -> int:
    """CRC-32C (Castagnoli) of ``data``, the byte-wise loop run on 1024 lanes at once with numpy.

    The register update is linear, so the register after chunk ``j`` started from ``r`` is the
    chunk's own crc (started from 0) xor ``r`` shifted by the chunk's length in zero bytes.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    reg = 0xFFFFFFFF
    m = len(buf) // _LANES
    if m:
        lanes = buf[: m * _LANES].reshape(_LANES, m)
        regs = np.zeros(_LANES, dtype=np.uint32)
        for col in lanes.T:
            regs = _TABLE[(regs ^ col) & 0xFF] ^ (regs >> 8)
        shift = _zeros_map(m)
        for r in regs.tolist():
            reg = _apply(shift, reg) ^ r
    for b in buf[m * _LANES:].tolist():
        reg = int(_TABLE[(reg ^ b) & 0xFF]) ^ (reg >> 8)
    return reg ^ 0xFFFFFFFF


def unmask(masked: int) -> int:
    """LevelDB/TensorFlow store ``rot15(crc) + 0xa282ead8``; undo it."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --------------------------------------------------------------------------- varints, protobuf

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise BundleError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """A protobuf message's ``(field number, value)`` pairs (varint, fixed and length-delimited)."""
    out, pos = [], 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos: pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos: pos + 4], "little"), pos + 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos: pos + size]), pos + size
        else:
            raise BundleError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise BundleError("truncated protobuf message")
        out.append((number, value))
    return out


def _entry(value: bytes) -> dict:
    """A ``BundleEntryProto``: dtype 1, shape 2, shard_id 3, offset 4, size 5, crc32c 6, slices 7."""
    entry = {"dtype": 0, "shape": [], "shard": 0, "offset": 0, "size": 0, "crc": None}
    for number, v in _fields(value):
        if number == 1:
            entry["dtype"] = v
        elif number == 2:  # TensorShapeProto: repeated Dim (2) {size 1, name 2}
            entry["shape"] = [next((s for n, s in _fields(d) if n == 1), 0)
                              for n, d in _fields(v) if n == 2]
        elif number in (3, 4, 5):
            entry[{3: "shard", 4: "offset", 5: "size"}[number]] = v
        elif number == 6:
            entry["crc"] = v
        elif number == 7:
            raise BundleError("partitioned (sliced) variables are not supported")
    return entry


# --------------------------------------------------------------------------- SSTable

def _block(table: bytes, handle: bytes) -> bytes:
    """The contents of the block a ``(varint offset, varint size)`` handle points at, crc-checked."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    end = offset + size
    if end + 5 > len(table):
        raise BundleError("a block lies past the end of the file (truncated)")
    kind, stored = table[end], int.from_bytes(table[end + 1: end + 5], "little")
    if kind != 0:
        raise BundleError(f"compressed blocks (type {kind}) are not supported")
    if crc32c(table[offset: end + 1]) != unmask(stored):
        raise BundleError("block checksum mismatch (corrupt file)")
    return table[offset:end]


def _entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one block (keys are stored as a shared prefix + a suffix)."""
    if len(block) < 4:
        raise BundleError("block too short")
    restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 * (restarts + 1)
    if end < 0:
        raise BundleError("bad restart array")
    out, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        size, pos = _varint(block, pos)
        key = key[:shared] + block[pos: pos + unshared]
        pos += unshared
        out.append((key, block[pos: pos + size]))
        pos += size
    if pos != end:
        raise BundleError("block entries overrun the restart array")
    return out


def read_index(path: Path) -> dict[str, dict]:
    """Tensor name → entry (dtype, shape, shard, offset, size, crc) of a bundle's ``.index``."""
    table = path.read_bytes()
    if len(table) < FOOTER:
        raise BundleError("shorter than a table footer (truncated)")
    footer = table[-FOOTER:]
    if struct.unpack("<Q", footer[-8:])[0] != MAGIC:
        raise BundleError("no SSTable magic number at the end (truncated or not a checkpoint index)")
    _, pos = _varint(footer, 0)  # the metaindex handle (unused)
    _, pos = _varint(footer, pos)
    index_handle = footer[pos:]
    entries = {}
    for _, handle in _entries(_block(table, index_handle)):
        for key, value in _entries(_block(table, handle)):
            if key:  # the empty key is the BundleHeaderProto
                entries[key.decode()] = _entry(value)
    return entries


# --------------------------------------------------------------------------- tensors

def _shard_path(prefix: str, shard: int, shards: int) -> Path:
    return Path(f"{prefix}.data-{shard:05d}-of-{shards:05d}")


def read_bundle(prefix: str, keep: Callable[[str], bool] | None = None,
                fix: str = "") -> dict[str, np.ndarray]:
    """Every tensor of the bundle ``prefix`` (``keep(name)`` filters), crc-checked. The prefix is
    a path string: ``"folder/"`` for a bundle named with an empty prefix (``folder/.index``).

    Any problem is a one-line :class:`UserError` naming the file, ending with ``fix``.
    """
    index = Path(f"{prefix}.index")
    hint = f"; {fix}" if fix else ""
    if not index.is_file():
        raise UserError(f"{index}: checkpoint index not found{hint}")
    try:
        entries = read_index(index)
    except (BundleError, OSError) as e:
        raise UserError(f"{index}: not a readable TensorFlow checkpoint index ({e}){hint}") from e
    shards = sorted({e["shard"] for e in entries.values()})
    num_shards = max(shards, default=0) + 1
    data = {}
    for shard in shards:
        path = _shard_path(prefix, shard, num_shards)
        if not path.is_file():
            raise UserError(f"{path}: checkpoint data file not found{hint}")
        size = max(e["offset"] + e["size"] for e in entries.values() if e["shard"] == shard)
        if path.stat().st_size < size:
            raise UserError(f"{path}: {path.stat().st_size} bytes, the index needs {size} "
                            f"(truncated){hint}")
        data[shard] = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    out = {}
    for name, e in entries.items():
        if keep is not None and not keep(name):
            continue
        path = _shard_path(prefix, e["shard"], num_shards)
        dtype = DTYPES.get(e["dtype"])
        if dtype is None:
            raise UserError(f"{path}: tensor {name!r} has unsupported dtype {e['dtype']}{hint}")
        count = int(np.prod(e["shape"], dtype=np.int64))
        if count * np.dtype(dtype).itemsize != e["size"]:
            raise UserError(f"{index}: tensor {name!r} shape {e['shape']} does not match its "
                            f"{e['size']} bytes (corrupt index){hint}")
        raw = data[e["shard"]][e["offset"]: e["offset"] + e["size"]]
        if len(raw) != e["size"]:
            raise UserError(f"{path}: tensor {name!r} lies past the end of the file (truncated){hint}")
        if e["crc"] is not None and crc32c(raw) != unmask(e["crc"]):
            raise UserError(f"{path}: tensor {name!r} fails its checksum (corrupt file){hint}")
        out[name] = np.frombuffer(raw.tobytes(), dtype=np.dtype(dtype).newbyteorder("<")).reshape(e["shape"])
    return out
