"""``tf.train.Example`` protobuf encoding and decoding by hand (no TensorFlow, no protoc).

The messages (tensorflow/core/example/{example,feature}.proto)::

    message Example   { Features features = 1; }
    message Features  { map<string, Feature> feature = 1; }
    message Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                                     Int64List int64_list = 3; } }
    message BytesList { repeated bytes value = 1; }
    message FloatList { repeated float value = 1 [packed = true]; }
    message Int64List { repeated int64 value = 1 [packed = true]; }

A map field is encoded as repeated entry messages ``{string key = 1; Feature value = 2;}``.

Encoding is deterministic and byte-identical to protobuf's
``SerializeToString(deterministic=True)``: map entries sorted by key (UTF-8 bytes, as C++
protobuf and so TensorFlow order them; python-protobuf's upb differs only when one key is a
prefix of another), numeric lists packed, an empty list encoded as an empty submessage. The shard
writers encode a whole batch into one buffer with :func:`.example_batch.encode_example_batch`
(numpy, no Python loop per record); :func:`encode_examples` is the per-record reference it must
equal. Varints are in :mod:`.protowire`.

Decoding accepts any valid encoding of these messages: fields in any order, packed and unpacked
repeated numbers (even mixed), repeated submessages that protobuf merges, unknown fields
(skipped), and a later map entry with the same key replacing an earlier one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from corpus_pipeline.formats.protowire import (
    WireError,
    decode_varints,
    encode_varint,
    encode_varint_rows,
)

__all__ = [
    "DecodedFeature",
    "ExampleDecodeError",
    "decode_example",
    "decode_examples",
    "encode_example",
    "encode_examples",
]

DecodedFeature = np.ndarray | list[bytes]
"""int64_list -> int64 array, float_list -> float32 array, bytes_list -> list of bytes."""

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# Feature oneof field numbers.
_BYTES, _FLOAT, _INT64 = 1, 2, 3
_U64 = np.uint64


class ExampleDecodeError(WireError):
    """The bytes are not a valid ``tf.train.Example`` encoding."""


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ExampleDecodeError("message ends inside a varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise ExampleDecodeError("varint longer than 10 bytes")


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def len_field(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: its tag, the varint length of ``body``, then ``body``."""
    return tag + encode_varint(len(body)) + body


def _feature_bytes(kind: int, payload: bytes) -> bytes:
    """A ``Feature`` message for a numeric list whose packed payload is ``payload``."""
    inner = len_field(b"\x0a", payload) if payload else b""
    return len_field(bytes([(kind << 3) | _LEN]), inner)


def _bytes_feature(values: Iterable[bytes]) -> bytes:
    inner = b"".join(len_field(b"\x0a", bytes(v)) for v in values)
    return len_field(bytes([(_BYTES << 3) | _LEN]), inner)


def _numeric_feature(value: np.ndarray) -> bytes:
    arr = np.asarray(value)
    if arr.dtype.kind in "iub":
        buf, _ = encode_varint_rows(arr.reshape(1, -1))
        return _feature_bytes(_INT64, buf)
    if arr.dtype.kind == "f":
        return _feature_bytes(_FLOAT, arr.astype("<f4").ravel().tobytes())
    raise TypeError(f"cannot encode dtype {arr.dtype} as a Feature (use int, float or bytes)")


def _is_bytes_list(value: object) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(v, (bytes, bytearray, memoryview)) for v in value)
    )


def _entry(key: str, feature: bytes) -> bytes:
    body = len_field(b"\x0a", key.encode("utf-8")) + len_field(b"\x12", feature)
    return len_field(b"\x0a", body)


def sorted_keys(keys: Iterable[str]) -> list[str]:
    """Feature names in protobuf's deterministic map order (by their UTF-8 bytes)."""
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def encode_example(features: Mapping[str, np.ndarray | Sequence[bytes]]) -> bytes:
    """Serialises one ``tf.train.Example``.

    Args:
        features: Name -> value. Integer (or bool) arrays become ``int64_list``, float arrays
            ``float_list`` (stored as float32), non-empty lists of bytes ``bytes_list``. Pass
            typed numpy arrays: an empty Python list would be ambiguous.

    Returns:
        The serialised message, byte-identical to protobuf's deterministic serialisation.
    """
    entries = []
    for key in sorted_keys(features):
        value = features[key]
        if _is_bytes_list(value):
            feat = _bytes_feature(value)  # type: ignore[arg-type]
        else:
            feat = _numeric_feature(np.asarray(value))
        entries.append(_entry(key, feat))
    return len_field(b"\x0a", b"".join(entries))


def encode_examples(columns: Mapping[str, np.ndarray]) -> list[bytes]:
    """Serialises a batch of ``tf.train.Example`` with the same numeric features.

    Each column is vectorised over the whole batch, so this is much faster than calling
    :func:`encode_example` per row. Output equals ``[encode_example(row) for row in rows]``.

    Args:
        columns: Name -> ``(N, W)`` integer or float matrix; row ``i`` of every column makes
            example ``i``. ``W`` may differ between columns.

    Returns:
        ``N`` serialised examples.
    """
    keys = sorted_keys(columns)
    if not keys:
        raise ValueError("encode_examples needs at least one column")
    n = int(np.asarray(columns[keys[0]]).shape[0])
    # Per column: (entry prefix before the Feature length, feature kind tag, payloads).
    per_col: list[tuple[bytes, bytes, list[bytes]]] = []
    for key in keys:
        m = np.asarray(columns[key])
        if m.ndim != 2 or m.shape[0] != n:
            raise ValueError(f"column {key!r} has shape {m.shape}, expected ({n}, W)")
        if m.dtype.kind in "iub":
            buf, offs = encode_varint_rows(m)
            o = offs.tolist()
            payloads = [buf[o[i] : o[i + 1]] for i in range(n)]
            kind = _INT64
        elif m.dtype.kind == "f":
            flat = m.astype("<f4").tobytes()
            step = 4 * m.shape[1]
            payloads = [flat[i * step : (i + 1) * step] for i in range(n)]
            kind = _FLOAT
        else:
            raise TypeError(f"column {key!r}: cannot encode dtype {m.dtype}")
        key_field = len_field(b"\x0a", key.encode("utf-8"))
        per_col.append((key_field, bytes([(kind << 3) | _LEN]), payloads))

    out = []
    ev = encode_varint
    for i in range(n):
        parts: list[bytes] = []
        for key_field, kind_tag, payloads in per_col:
            p = payloads[i]
            # Feature { kind { 0x0a len payload } }, sizes from the inside out.
            lst_len = 1 + len(ev(len(p))) + len(p) if p else 0
            feat_len = 1 + len(ev(lst_len)) + lst_len
            entry_len = len(key_field) + 1 + len(ev(feat_len)) + feat_len
            parts += (b"\x0a", ev(entry_len), key_field, b"\x12", ev(feat_len))
            parts += (kind_tag, ev(lst_len))
            if p:
                parts += (b"\x0a", ev(len(p)), p)
        body = b"".join(parts)
        out.append(b"\x0a" + ev(len(body)) + body)
    return out


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _read_len(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Returns ``(start, stop)`` of a length-delimited field whose length varint is at pos."""
    b = buf[pos]
    if b < 0x80:
        length = b
        pos += 1
    else:
        length, pos = _read_varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise ExampleDecodeError("length-delimited field runs past the end of its message")
    return pos, stop


def _skip(buf: bytes, pos: int, end: int, wire_type: int) -> int:
    if wire_type == _VARINT:
        return _read_varint(buf, pos, end)[1]
    if wire_type == _I64:
        pos += 8
    elif wire_type == _I32:
        pos += 4
    elif wire_type == _LEN:
        pos = _read_len(buf, pos, end)[1]
    else:
        # Groups (3/4) are not valid in these proto3 messages.
        raise ExampleDecodeError(f"unsupported wire type {wire_type}")
    if pos > end:
        raise ExampleDecodeError("field runs past the end of its message")
    return pos


def _parse_list(buf: bytes, pos: int, end: int, kind: int, acc: list, pieces: list[bytes]) -> None:
    """Appends the values of a BytesList/FloatList/Int64List body to ``acc``.

    Packed int64 runs are not decoded here: their bytes go to ``pieces`` (decoded for a whole
    batch at once) and ``acc`` gets the piece number.
    """
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _read_varint(buf, pos, end)
        field, wt = tag >> 3, tag & 7
        if field != 1:
            pos = _skip(buf, pos, end, wt)
            continue
        if kind == _INT64:
            if wt == _LEN:
                s, pos = _read_len(buf, pos, end)
                acc.append(len(pieces))
                pieces.append(buf[s:pos])
            elif wt == _VARINT:
                v, pos = _read_varint(buf, pos, end)
                acc.append(np.array([v], dtype=np.uint64).view(np.int64))
            else:
                raise ExampleDecodeError(f"int64_list value with wire type {wt}")
        elif kind == _FLOAT:
            if wt == _LEN:
                s, pos = _read_len(buf, pos, end)
                if (pos - s) % 4:
                    raise ExampleDecodeError("packed float_list length is not a multiple of 4")
                acc.append(np.frombuffer(buf, dtype="<f4", count=(pos - s) // 4, offset=s))
            elif wt == _I32:
                if pos + 4 > end:
                    raise ExampleDecodeError("float value runs past the end of its message")
                acc.append(np.frombuffer(buf, dtype="<f4", count=1, offset=pos))
                pos += 4
            else:
                raise ExampleDecodeError(f"float_list value with wire type {wt}")
        else:
            if wt != _LEN:
                raise ExampleDecodeError(f"bytes_list value with wire type {wt}")
            s, pos = _read_len(buf, pos, end)
            acc.append(buf[s:pos])


def _parse_feature(buf: bytes, pos: int, end: int, state: list, pieces: list[bytes]) -> None:
    """Merges a Feature body into ``state = [kind, chunks]`` (protobuf merge semantics)."""
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _read_varint(buf, pos, end)
        field, wt = tag >> 3, tag & 7
        if wt == _LEN and field in (_BYTES, _FLOAT, _INT64):
            s, pos = _read_len(buf, pos, end)
            if state[0] != field:
                # A different oneof member replaces the current one; the same one merges.
                state[0] = field
                state[1] = []
            _parse_list(buf, s, pos, field, state[1], pieces)
        else:
            pos = _skip(buf, pos, end, wt)


def _parse_example(buf: bytes, pieces: list[bytes]) -> dict[str, list]:
    """Parses the message structure: feature name -> ``[kind, chunks]``."""
    end = len(buf)
    states: dict[str, list] = {}
    pos = 0
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _read_varint(buf, pos, end)
        if tag != 0x0A:  # anything but Example.features (field 1, LEN)
            pos = _skip(buf, pos, end, tag & 7)
            continue
        # Repeated occurrences of an embedded message merge: their map entries accumulate.
        fpos, fend = _read_len(buf, pos, end)
        pos = fend
        while fpos < fend:
            tag = buf[fpos]
            if tag < 0x80:
                fpos += 1
            else:
                tag, fpos = _read_varint(buf, fpos, fend)
            if tag != 0x0A:  # anything but a Features.feature map entry
                fpos = _skip(buf, fpos, fend, tag & 7)
                continue
            # Lengths are read inline (one-byte fast path): this loop is the reader's hot spot.
            n = buf[fpos]
            if n < 0x80:
                p = fpos + 1
            else:
                n, p = _read_varint(buf, fpos, fend)
            eend = p + n
            if eend > fend:
                raise ExampleDecodeError("map entry runs past the end of Features")
            fpos = eend
            key = b""
            state: list = [0, []]
            while p < eend:
                etag = buf[p]
                if etag < 0x80:
                    p += 1
                else:
                    etag, p = _read_varint(buf, p, eend)
                if etag != 0x0A and etag != 0x12:
                    p = _skip(buf, p, eend, etag & 7)
                    continue
                n = buf[p]
                if n < 0x80:
                    p += 1
                else:
                    n, p = _read_varint(buf, p, eend)
                vs = p
                p += n
                if p > eend:
                    raise ExampleDecodeError("map entry field runs past the end of the entry")
                if etag == 0x0A:  # key
                    key = buf[vs:p]
                    continue
                # Value. Fast path for the usual shape: Feature{kind: {0x0a len payload}}, a
                # single packed numeric list; anything else takes the general path.
                ktag = buf[vs] if vs < p else 0
                if (ktag == 0x1A or ktag == 0x12) and state[0] == 0:
                    ls, le = _read_len(buf, vs + 1, p)
                    if le == p:
                        if ls == le:
                            state[0] = ktag >> 3
                            continue
                        if buf[ls] == 0x0A:
                            ps, pe = _read_len(buf, ls + 1, le)
                            if pe == le:
                                if ktag == 0x1A:
                                    state[0] = _INT64
                                    state[1].append(len(pieces))
                                    pieces.append(buf[ps:pe])
                                    continue
                                if not (pe - ps) % 4:
                                    state[0] = _FLOAT
                                    state[1].append(np.frombuffer(buf, "<f4", (pe - ps) // 4, ps))
                                    continue
                _parse_feature(buf, vs, p, state, pieces)
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ExampleDecodeError("feature name is not valid UTF-8") from e
            # Map semantics: a later entry with the same key replaces the earlier one.
            states[name] = state
    return states


def _decode_pieces(pieces: list[bytes]) -> list[np.ndarray]:
    """Decodes many packed-varint runs with one vectorised pass over their concatenation."""
    if not pieces:
        return []
    lens = np.fromiter((len(x) for x in pieces), dtype=np.int64, count=len(pieces))
    b = np.frombuffer(b"".join(pieces), dtype=np.uint8)
    last = b < 0x80
    ends = np.cumsum(lens)
    nonempty = lens > 0
    # Every run must end on a varint's last byte, or a varint would straddle two runs.
    if not last[ends[nonempty] - 1].all():
        raise ExampleDecodeError("packed varints end inside a varint")
    try:
        values = decode_varints(b)
    except WireError as e:
        raise ExampleDecodeError(str(e)) from None
    if values.shape[0] == b.shape[0]:
        bounds = [0, *ends.tolist()]
    else:
        cs = np.zeros(b.shape[0] + 1, dtype=np.int64)
        np.cumsum(last, out=cs[1:])
        bounds = [0, *cs[ends].tolist()]
    return [values[bounds[i] : bounds[i + 1]] for i in range(len(pieces))]


def _finish(state: list, decoded: list[np.ndarray]) -> DecodedFeature:
    kind, chunks = state
    if kind == _BYTES:
        return [bytes(c) for c in chunks]
    if kind == _FLOAT:
        if not chunks:
            return np.empty(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)
    # int64_list, or no kind set: TF treats an unset Feature as an empty list.
    arrays = [decoded[c] if isinstance(c, int) else c for c in chunks]
    if not arrays:
        return np.empty(0, dtype=np.int64)
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def decode_examples(
    records: Sequence[bytes | bytearray | memoryview],
) -> list[dict[str, DecodedFeature]]:
    """Parses a batch of serialised ``tf.train.Example`` (varints decoded for all at once).

    Args:
        records: Serialised messages.

    Returns:
        One dict per record, as :func:`decode_example` returns.

    Raises:
        ExampleDecodeError: A record is not a valid encoding (decode records one by one to
            find which).
    """
    pieces: list[bytes] = []
    parsed = []
    try:
        for data in records:
            parsed.append(_parse_example(bytes(data), pieces))
    except IndexError as e:
        # A length or tag varint ran off the end of the buffer.
        raise ExampleDecodeError("message is truncated") from e
    decoded = _decode_pieces(pieces)
    return [{name: _finish(st, decoded) for name, st in states.items()} for states in parsed]


def decode_example(data: bytes | bytearray | memoryview) -> dict[str, DecodedFeature]:
    """Parses a serialised ``tf.train.Example``.

    Args:
        data: The serialised message.

    Returns:
        Feature name -> int64 array (``int64_list``), float32 array (``float_list``) or list of
        bytes (``bytes_list``). A Feature with no list set decodes as an empty int64 array.

    Raises:
        ExampleDecodeError: The bytes are not a valid encoding.
    """
    return decode_examples([data])[0]
