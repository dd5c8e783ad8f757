"""TFRecord format layer: CRC-32C, hand-made tf.train.Example, shard writers and readers.

The oracles are real third-party code: the ``crc32c`` C extension, protobuf's own
``tf.train.Example`` (the ``tfrecord`` package's ``example_pb2``) and the ``tfrecord`` package's
reader and index builder, which is how PyTorch users consume these shards.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus_pipeline.formats import crc32c as crc_mod
from corpus_pipeline.formats import example_batch as eb
from corpus_pipeline.formats import example_proto as ep
from corpus_pipeline.formats import protowire as pw
from corpus_pipeline.formats.common import FormatError
from corpus_pipeline.formats.tfrecord import (
    PACKED_FEATURES,
    UNPACKED_FEATURES,
    frame_record,
    index_path_for,
    iter_records,
    iter_records_with_offsets,
    read_index,
    read_packed_tfrecord,
    read_tfrecord,
)
from corpus_pipeline.formats.tfrecord_columns import (
    instances_to_columns,
    instances_to_columns_loop,
    packs_to_columns,
    packs_to_columns_loop,
)
from corpus_pipeline.formats.tfrecord_writer import PackedTFRecordShardWriter, TFRecordShardWriter
from corpus_pipeline.hashing import rng_for
from corpus_pipeline.records import Instance, Pack
from corpus_pipeline.resources import SAMPLE_GOOGLE_TEXT, UNCASED_VOCAB
from tests.support.packs import first_fit_packs

tfrecord = pytest.importorskip("tfrecord")
from tfrecord import example_pb2  # noqa: E402
from tfrecord.tools.tfrecord2idx import create_index  # noqa: E402

HYP = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CLS, SEP = 101, 102


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def make_instance(rng: np.random.Generator, length: int, max_pred: int) -> Instance:
    """A random but well-formed instance (token 0 may occur inside: unpadding must use mask)."""
    ids = rng.integers(0, 30522, length).astype(np.int32)
    ids[0] = CLS
    seg = np.zeros(length, dtype=np.int8)
    seg[int(rng.integers(1, length + 1)) :] = 1
    m = int(rng.integers(0, min(max_pred, length - 1) + 1))
    pos = np.sort(rng.choice(np.arange(1, length), size=m, replace=False)).astype(np.int32)
    return Instance(
        input_ids=ids,
        segment_ids=seg,
        masked_lm_positions=pos,
        masked_lm_ids=rng.integers(0, 30522, m).astype(np.int32),
        next_sentence_label=int(rng.integers(0, 2)),
    )


def make_pack(rng: np.random.Generator, s: int, p: int, k: int) -> Pack:
    n = int(rng.integers(1, k + 1))
    lens = rng.integers(1, s // n + 1, size=n)
    if rng.random() < 0.5:  # a pack that fills S exactly
        lens[-1] = s - int(lens[:-1].sum())
    insts = [make_instance(rng, int(x), p) for x in lens]
    # Keep the pack within the packed prediction budget M = P + K - 1.
    budget = p + k - 1
    for inst in insts:
        m = min(len(inst.masked_lm_positions), budget)
        inst.masked_lm_positions = inst.masked_lm_positions[:m]
        inst.masked_lm_ids = inst.masked_lm_ids[:m]
        budget -= m
    return Pack(insts)


def load_with_tfrecord_pkg(path: Path, description: dict[str, str], shard=(0, 1)) -> list[dict]:
    return list(
        tfrecord.tfrecord_loader(str(path), str(index_path_for(path)), description, shard=shard)
    )


def pb_example(features: dict) -> example_pb2.Example:
    """The same features built with protobuf itself."""
    ex = example_pb2.Example()
    for key, value in features.items():
        feat = ex.features.feature[key]
        if isinstance(value, list):
            feat.bytes_list.value.extend(value)
        elif value.dtype.kind == "f":
            feat.float_list.SetInParent()
            feat.float_list.value.extend(value.tolist())
        else:
            feat.int64_list.SetInParent()
            feat.int64_list.value.extend(value.tolist())
    return ex


def pb_to_dict(ex: example_pb2.Example) -> dict:
    out: dict = {}
    for key, feat in ex.features.feature.items():
        kind = feat.WhichOneof("kind")
        if kind == "bytes_list":
            out[key] = list(feat.bytes_list.value)
        elif kind == "float_list":
            out[key] = np.array(feat.float_list.value, dtype=np.float32)
        else:
            out[key] = np.array(feat.int64_list.value if kind else [], dtype=np.int64)
    return out


def assert_features_equal(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        if isinstance(a[key], list) or isinstance(b[key], list):
            assert a[key] == b[key], key
        else:
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def bytewise_crc32c(data: bytes) -> int:
    """Textbook bit-at-a-time CRC-32C, independent of the module under test."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# CRC-32C
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [crc_mod.crc32c, crc_mod.crc32c_numpy])
def test_crc_check_vectors(fn) -> None:
    assert fn(b"123456789") == 0xE3069283
    assert crc_mod.mask_crc(fn(b"123456789")) == 0xC78AB0E5
    assert crc_mod.mask_crc(fn(b"")) == 0xA282EAD8
    assert fn(b"") == 0


def test_crc_backend_is_the_c_extension_here() -> None:
    pytest.importorskip("crc32c")
    assert crc_mod.BACKEND.startswith("crc32c C extension")


@pytest.mark.parametrize(
    "n", [1, 3, 4, 5, 63, 64, 65, 1000, 4095, 4096, 4097, 8192 + 3, 256 * 4096 + 4100]
)
def test_numpy_crc_matches_c_extension(n: int) -> None:
    ext = pytest.importorskip("crc32c")
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert crc_mod.crc32c_numpy(data) == ext.crc32c(data)
    # Continuing a running CRC over a split gives the whole-buffer CRC.
    cut = n // 3
    assert crc_mod.crc32c_numpy(data[cut:], crc_mod.crc32c_numpy(data[:cut])) == ext.crc32c(data)


@pytest.mark.parametrize("n", [0, 1, 7, 64, 100, 300])
def test_both_crc_paths_match_a_bitwise_reference(n: int) -> None:
    data = os.urandom(n)
    assert crc_mod.crc32c_numpy(data) == bytewise_crc32c(data)
    assert crc_mod.crc32c(data) == bytewise_crc32c(data)


def test_shard_bytes_identical_with_numpy_crc(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(5)
    insts = [make_instance(rng, int(rng.integers(2, 65)), 10) for _ in range(20)]
    with TFRecordShardWriter(tmp_path / "c.tfrecord", 64, 10) as w1:
        w1.write(insts)
    monkeypatch.setattr(crc_mod, "_crc_impl", crc_mod.crc32c_numpy)
    with TFRecordShardWriter(tmp_path / "n.tfrecord", 64, 10) as w2:
        w2.write(insts)
    assert w1.sha256 == w2.sha256
    assert list(read_tfrecord(tmp_path / "c.tfrecord")) == insts  # verified with numpy CRC


# --------------------------------------------------------------------------------------------
# tf.train.Example by hand
# --------------------------------------------------------------------------------------------


def test_varints_match_protobuf_rules() -> None:
    values = np.array(
        [0, 1, 127, 128, 16383, 16384, 30521, 2**21, 2**35, 2**62, 2**63 - 1, -1, -(2**63)],
        dtype=np.int64,
    )
    buf, offs = pw.encode_varint_rows(values.reshape(1, -1))
    ref = b"".join(pw.encode_varint(int(v) & 0xFFFFFFFFFFFFFFFF) for v in values)
    assert buf == ref and offs.tolist() == [0, len(ref)]
    assert pw.encode_varint(300) == b"\xac\x02"
    assert len(pw.encode_varint(2**64 - 1)) == 10
    np.testing.assert_array_equal(pw.decode_varints(buf), values)
    with pytest.raises(pw.WireError):
        pw.decode_varints(b"\x01\x80")  # ends inside a varint
    with pytest.raises(pw.WireError):
        pw.decode_varints(b"\xff" * 10 + b"\x01")  # 11 bytes


@st.composite
def feature_dicts(draw):
    # Equal-length names: where one key is a prefix of another ("a" / "ab", or "" / "a"),
    # python-protobuf (upb) puts the longer key first, while C++ protobuf (what TensorFlow uses,
    # and what we follow: plain bytewise order) puts the prefix first. BERT names never collide so.
    size = draw(st.integers(1, 6))
    names = draw(
        st.lists(st.text(min_size=size, max_size=size), min_size=1, max_size=5, unique=True)
    )
    out = {}
    for name in names:
        kind = draw(st.sampled_from(["int", "float", "bytes"]))
        n = draw(st.integers(0, 40))
        if kind == "int":
            vals = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
            out[name] = np.array(vals, dtype=np.int64)
        elif kind == "float":
            vals = draw(st.lists(st.floats(width=32, allow_nan=False), min_size=n, max_size=n))
            out[name] = np.array(vals, dtype=np.float32)
        else:
            out[name] = draw(st.lists(st.binary(max_size=8), min_size=1, max_size=4))
    return out


@HYP
@given(feature_dicts())
def test_encode_example_is_protobufs_deterministic_serialisation(features) -> None:
    ours = ep.encode_example(features)
    assert ours == pb_example(features).SerializeToString(deterministic=True)
    assert_features_equal(ep.decode_example(ours), features)


def test_map_entries_are_in_bytewise_key_order() -> None:
    one = np.array([1])
    enc = ep.encode_example({"b": one, "é": one, "ab": one, "a": one, "B": one})
    assert list(ep.decode_example(enc)) == ["B", "a", "ab", "b", "é"]


def test_encode_examples_batch_equals_one_by_one() -> None:
    rng = np.random.default_rng(0)
    cols = {
        "ids": rng.integers(0, 30522, (50, 33)),
        "small": rng.integers(0, 3, (50, 7)),
        "neg": rng.integers(-5, 5, (50, 2)),
        "empty": np.zeros((50, 0), dtype=np.int64),
        "w": rng.random((50, 5)).astype(np.float32),
    }
    batch = ep.encode_examples(cols)
    assert batch == [ep.encode_example({k: v[i] for k, v in cols.items()}) for i in range(50)]
    assert ep.decode_examples(batch)[7]["ids"].tolist() == cols["ids"][7].tolist()


def _ld(tag: int, body: bytes) -> bytes:
    return pw.encode_varint(tag) + pw.encode_varint(len(body)) + body


def _list_chunks(kind: str, values, draw) -> bytes:
    """One list body, with values split over packed and unpacked chunks in random ways."""
    out = b""
    i = 0
    while i < len(values):
        j = draw(st.integers(i + 1, len(values)))
        chunk = values[i:j]
        style = draw(st.sampled_from(["packed", "unpacked"]))
        if kind == "bytes":
            out += b"".join(_ld(0x0A, v) for v in chunk)
        elif kind == "int":
            if style == "packed":
                out += _ld(0x0A, b"".join(pw.encode_varint(v & (2**64 - 1)) for v in chunk))
            else:
                out += b"".join(b"\x08" + pw.encode_varint(v & (2**64 - 1)) for v in chunk)
        elif style == "packed":
            out += _ld(0x0A, struct.pack(f"<{len(chunk)}f", *chunk))
        else:
            out += b"".join(b"\x0d" + struct.pack("<f", v) for v in chunk)
        if draw(st.booleans()):
            out += b"\x10\x05"  # an unknown varint field inside the list: skipped
        i = j
    return out


@st.composite
def odd_encodings(draw):
    """Valid but non-canonical Example encodings: any order, unpacked, split, unknown fields."""
    entries = []
    for _ in range(draw(st.integers(1, 5))):
        name = draw(st.sampled_from(["a", "b", "input_ids", "é"])).encode()
        kind = draw(st.sampled_from(["int", "float", "bytes"]))
        if kind == "int":
            values = draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=6))
        elif kind == "float":
            values = draw(st.lists(st.floats(width=32, allow_nan=False), max_size=6))
        else:
            values = draw(st.lists(st.binary(max_size=4), max_size=3))
        tag = {"bytes": 0x0A, "float": 0x12, "int": 0x1A}[kind]
        feature = _ld(tag, _list_chunks(kind, values, draw))
        if draw(st.booleans()):
            # The same oneof member again: protobuf merges (concatenates) the lists.
            feature += _ld(tag, _list_chunks(kind, values[:2], draw))
        if draw(st.booleans()):
            # Another oneof member after it: replaces it.
            feature += _ld(0x1A, _list_chunks("int", [7, 300], draw))
        parts = [_ld(0x0A, name), _ld(0x12, feature)]
        if draw(st.booleans()):
            parts.reverse()  # value before key
        entries.append(_ld(0x0A, b"".join(parts)))  # duplicate keys: the last one wins
    features = b"".join(entries)
    if draw(st.booleans()):
        features += b"\x15\x00\x00\x80\x3f"  # unknown fixed32 field in Features
    split = draw(st.integers(0, len(entries)))
    # Features split over two occurrences of Example.features: protobuf merges them.
    body = _ld(0x0A, b"".join(entries[:split])) + _ld(
        0x0A, features[len(b"".join(entries[:split])) :]
    )
    if draw(st.booleans()):
        body = b"\x19" + bytes(8) + body  # unknown fixed64 field first
    return body


@HYP
@given(odd_encodings())
def test_decoder_agrees_with_protobuf_on_any_valid_encoding(data: bytes) -> None:
    ref = example_pb2.Example()
    ref.ParseFromString(data)
    assert_features_equal(ep.decode_example(data), pb_to_dict(ref))


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x05\x0a\x03\x0a\x01",  # entry runs past its parent
        b"\x0a",  # tag without length
        b"\x0a\x08\x0a\x06\x12\x04\x1a\x02\x0a\x05",  # packed run past its list
        b"\x0b\x00",  # group wire type
        b"\x0a\x07\x0a\x05\x12\x03\x12\x01\x0a",  # packed float run of 0 bytes + dangling tag
    ],
)
def test_decoder_rejects_malformed_bytes(data: bytes) -> None:
    from google.protobuf.message import DecodeError

    with pytest.raises(DecodeError):  # protobuf agrees these are invalid
        example_pb2.Example().ParseFromString(data)
    with pytest.raises(ep.ExampleDecodeError):
        ep.decode_example(data)


# --------------------------------------------------------------------------------------------
# Unpacked shards (Google BERT)
# --------------------------------------------------------------------------------------------


@HYP
@given(
    seed=st.integers(0, 2**32 - 1),
    s=st.integers(16, 128),
    p=st.integers(1, 20),
    n=st.integers(2, 12),
)
def test_unpacked_round_trip(tmp_path: Path, seed: int, s: int, p: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    insts = [make_instance(rng, int(rng.integers(2, s + 1)), p) for _ in range(n)]
    path = tmp_path / f"rt_{seed}_{s}_{p}_{n}.tfrecord"
    with TFRecordShardWriter(path, s, p) as w:
        w.write(insts[: n // 2])
        w.write(insts[n // 2 :])
    assert w.num_records == n
    back = list(read_tfrecord(path))
    assert back == insts
    assert back[0].input_ids.dtype == np.int32 and back[0].segment_ids.dtype == np.int8


def test_tfrecord_package_reads_every_record_with_google_types(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    s, p = 128, 20
    insts = [make_instance(rng, int(rng.integers(2, s + 1)), p) for _ in range(30)]
    path = tmp_path / "wiki_training_00000.tfrecord"
    with TFRecordShardWriter(path, s, p) as w:
        w.write(insts)
    cols = instances_to_columns(insts, s, p)

    got = load_with_tfrecord_pkg(path, UNPACKED_FEATURES)
    assert len(got) == 30
    for i, rec in enumerate(got):
        assert sorted(rec) == sorted(UNPACKED_FEATURES)
        for name, kind in UNPACKED_FEATURES.items():
            assert rec[name].dtype == (np.float32 if kind == "float" else np.int64)
            np.testing.assert_array_equal(rec[name], cols[name][i], err_msg=name)
        assert rec["input_ids"].shape == (s,) and rec["masked_lm_weights"].shape == (p,)
        assert rec["next_sentence_labels"].tolist() == [insts[i].next_sentence_label]

    # Worker sharding through our index: 3 shards cover every record once, in order.
    sharded = [r for i in range(3) for r in load_with_tfrecord_pkg(path, UNPACKED_FEATURES, (i, 3))]
    assert [r["input_ids"].tolist() for r in sharded] == [r["input_ids"].tolist() for r in got]


def test_index_matches_tfrecord2idx_and_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "x.tfrecord"
    with TFRecordShardWriter(path, 64, 8) as w:
        w.write([make_instance(rng, int(rng.integers(2, 65)), 8) for _ in range(17)])
    assert w.index_path == tmp_path / "x.index"
    create_index(str(path), str(tmp_path / "ref.index"))
    assert (tmp_path / "x.index").read_bytes() == (tmp_path / "ref.index").read_bytes()
    index = read_index(tmp_path / "x.index")
    offsets = [off for off, _ in iter_records_with_offsets(path)]
    assert index[:, 0].tolist() == offsets
    assert int(index[-1].sum()) == path.stat().st_size
    datas = list(iter_records(path))
    assert [len(d) + 16 for d in datas] == index[:, 1].tolist()
    assert b"".join(frame_record(d) for d in datas) == path.read_bytes()


def test_output_is_byte_identical_and_sha256_is_of_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    insts = [make_instance(rng, int(rng.integers(2, 129)), 20) for _ in range(40)]
    with TFRecordShardWriter(tmp_path / "a.tfrecord", 128, 20) as a:
        a.write(insts)
    with TFRecordShardWriter(tmp_path / "b.tfrecord", 128, 20) as b:
        for i in range(0, 40, 7):  # different batch boundaries
            b.write(insts[i : i + 7])
    data = (tmp_path / "a.tfrecord").read_bytes()
    assert data == (tmp_path / "b.tfrecord").read_bytes()
    assert (tmp_path / "a.index").read_bytes() == (tmp_path / "b.index").read_bytes()
    assert a.sha256 == b.sha256 == hashlib.sha256(data).hexdigest()
    assert a.num_records == 40


def sample_instances(p: int = 20) -> list[Instance]:
    """Real WordPiece ids (bundled vocab, Google's sample text), statically masked."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.BertWordPieceTokenizer(str(UNCASED_VOCAB), lowercase=True)
    lines = [ln for ln in SAMPLE_GOOGLE_TEXT.read_text(encoding="utf-8").splitlines() if ln]
    insts = []
    for j in range(len(lines) - 1):
        a = tok.encode(lines[j], add_special_tokens=False).ids[:60]
        b = tok.encode(lines[j + 1], add_special_tokens=False).ids[:60]
        ids = np.array([CLS, *a, SEP, *b, SEP], dtype=np.int32)
        seg = np.array([0] * (len(a) + 2) + [1] * (len(b) + 1), dtype=np.int8)
        rng = rng_for(0, "sample", j, "mask")
        cand = np.flatnonzero((ids != CLS) & (ids != SEP))
        m = min(p, max(1, round(len(ids) * 0.15)), len(cand))
        pos = np.sort(rng.choice(cand, m, replace=False)).astype(np.int32)
        labels = ids[pos].copy()
        ids[pos] = 103  # [MASK]
        insts.append(Instance(ids, seg, pos, labels, j % 2))
    return insts


def test_real_wordpiece_ids_from_bundled_sample(tmp_path: Path) -> None:
    """Real WordPiece ids (bundled vocab, Google's sample text) through both schemas."""
    s, p, k = 128, 20, 3
    insts = sample_instances(p)
    assert max(int(i.input_ids.max()) for i in insts) > 16384  # 3-byte varints occur

    path = tmp_path / "sample.tfrecord"
    with TFRecordShardWriter(path, s, p) as w:
        w.write(insts)
    assert list(read_tfrecord(path)) == insts
    got = load_with_tfrecord_pkg(path, UNPACKED_FEATURES)
    assert [r["input_ids"][: len(i)].tolist() for r, i in zip(got, insts, strict=True)] == [
        i.input_ids.tolist() for i in insts
    ]

    packs = first_fit_packs(insts, s, k)
    ppath = tmp_path / "sample_packed.tfrecord"
    with PackedTFRecordShardWriter(ppath, s, p + 2, k) as pw:  # +2: room for 3 x 20 > 22
        pw.write(packs)
    assert [q.instances for q in read_packed_tfrecord(ppath)] == [q.instances for q in packs]


# --------------------------------------------------------------------------------------------
# Packed shards (Graphcore)
# --------------------------------------------------------------------------------------------


def _inst(ids, seg, pos, mids, nsp) -> Instance:
    return Instance(
        np.array(ids, np.int32),
        np.array(seg, np.int8),
        np.array(pos, np.int32),
        np.array(mids, np.int32),
        nsp,
    )


def test_packed_layout_by_hand(tmp_path: Path) -> None:
    """Lengths [5, 3] at S=16, P=4, K=3 (M=6), decoded by the tfrecord package."""
    a = _inst([CLS, 11, 12, 13, SEP], [0, 0, 0, 1, 1], [1, 3], [500, 501], 0)
    b = _inst([CLS, 21, SEP], [0, 0, 1], [1], [600], 1)
    path = tmp_path / "hand.tfrecord"
    with PackedTFRecordShardWriter(path, 16, 4, 3) as w:
        w.write([Pack([a, b]), Pack([b, a])])  # two records: the package can use the index
    rec = load_with_tfrecord_pkg(path, PACKED_FEATURES)[0]
    z = [0] * 8
    assert rec["packed_input_ids"].tolist() == [11, 12, 13, SEP, 21, SEP, *z, CLS, CLS]
    assert rec["packed_input_mask"].tolist() == [1, 1, 1, 1, 2, 2, *z, 2, 1]
    assert rec["packed_segment_ids"].tolist() == [0, 0, 1, 1, 0, 1, *z, 0, 0]
    assert rec["packed_position_ids"].tolist() == [1, 2, 3, 4, 1, 2, *z, 0, 0]
    assert rec["packed_masked_lm_positions"].tolist() == [0, 2, 4, 0, 0, 0]
    assert rec["packed_masked_lm_ids"].tolist() == [500, 501, 600, 0, 0, 0]
    assert rec["packed_masked_lm_mask"].tolist() == [1.0, 1.0, 2.0, 0.0, 0.0, 0.0]
    assert rec["packed_masked_lm_mask"].dtype == np.float32
    assert rec["packed_next_sentence_labels"].tolist() == [0, 1, 0]
    assert rec["packed_next_sentence_mask"].tolist() == [0.0, 1.0, 1.0]
    # Masked positions point at the original tokens of their own sequence.
    ids = rec["packed_input_ids"]
    assert ids[[0, 2, 4]].tolist() == [11, 13, 21]
    back = list(read_packed_tfrecord(path))
    assert back[0].instances == [a, b] and back[1].instances == [b, a]


def test_full_pack_fills_s_exactly() -> None:
    a = _inst([CLS, *range(1000, 1009)], [0] * 10, [9], [7], 0)  # 10 tokens, 9 in the body
    b = _inst([CLS, *range(2000, 2005)], [0] * 6, [], [], 1)  # 6 tokens, 5 in the body
    cols = packs_to_columns([Pack([a, b])], 16, 2, 2)
    assert cols["packed_input_ids"][0].tolist() == [
        *range(1000, 1009),
        *range(2000, 2005),
        CLS,
        CLS,
    ]
    assert cols["packed_input_mask"][0].tolist() == [1] * 9 + [2] * 5 + [2, 1]
    assert cols["packed_position_ids"][0].tolist() == [*range(1, 10), *range(1, 6), 0, 0]
    assert cols["packed_masked_lm_positions"][0].tolist() == [8, 0, 0]  # M = P + K - 1 = 3
    assert cols["packed_next_sentence_labels"][0].tolist() == [1, 0]


@HYP
@given(
    seed=st.integers(0, 2**32 - 1),
    s=st.integers(16, 128),
    p=st.integers(1, 20),
    k=st.integers(1, 3),
    n=st.integers(2, 8),
)
def test_packed_round_trip(tmp_path: Path, seed: int, s: int, p: int, k: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    packs = [make_pack(rng, s, p, k) for _ in range(n)]
    path = tmp_path / f"pk_{seed}_{s}_{p}_{k}_{n}.tfrecord"
    with PackedTFRecordShardWriter(path, s, p, k) as w:
        w.write(packs)
    back = list(read_packed_tfrecord(path))
    assert [q.instances for q in back] == [q.instances for q in packs]
    # The consumer's view: block-diagonal attention groups exactly each sequence's tokens.
    cols = packs_to_columns(packs, s, p, k)
    for row, pack in zip(load_with_tfrecord_pkg(path, PACKED_FEATURES), packs, strict=True):
        for name in PACKED_FEATURES:
            np.testing.assert_array_equal(row[name], cols[name][packs.index(pack)])
        mask = row["packed_input_mask"]
        for j, inst in enumerate(pack.instances, start=1):
            assert int((mask == j).sum()) == len(inst)
        assert row["packed_masked_lm_positions"].shape == (p + k - 1,)


# --------------------------------------------------------------------------------------------
# Validation, atomicity, corruption
# --------------------------------------------------------------------------------------------


def test_writers_reject_what_does_not_fit(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    with TFRecordShardWriter(tmp_path / "v.tfrecord", 16, 2) as w:
        with pytest.raises(ValueError):
            w.write([make_instance(rng, 17, 2)])  # longer than S
        bad = _inst([CLS, 5, 6], [0, 0, 0], [0], [9], 0)
        with pytest.raises(ValueError, match="CLS"):
            w.write([bad])
        w.write([make_instance(rng, 16, 2), make_instance(rng, 3, 2)])  # still usable
    assert len(list(read_tfrecord(tmp_path / "v.tfrecord"))) == 2

    with PackedTFRecordShardWriter(tmp_path / "p.tfrecord", 16, 2, 2) as pw:
        a = _inst([CLS, 5, 6], [0, 0, 0], [0], [9], 0)
        with pytest.raises(ValueError, match="CLS"):
            pw.write([Pack([a])])  # a masked [CLS] would land on another sequence's token
        with pytest.raises(ValueError):
            pw.write([Pack([make_instance(rng, 10, 2), make_instance(rng, 7, 2)])])  # 17 > S
        with pytest.raises(ValueError):
            pw.write([Pack([make_instance(rng, 3, 2)] * 3)])  # 3 > K
        many = _inst([CLS, 1, 2, 3], [0] * 4, [1, 2], [1, 2], 0)
        with pytest.raises(ValueError, match="P \\+ K - 1"):
            pw.write([Pack([many, many])])  # 4 predictions > M = 3
        pw.write([Pack([make_instance(rng, 8, 1)]), Pack([make_instance(rng, 3, 1)])])
    assert pw.num_records == 2


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    with (
        pytest.raises(RuntimeError, match="boom"),
        TFRecordShardWriter(tmp_path / "x.tfrecord", 32, 4) as w,
    ):
        w.write([make_instance(rng, 20, 4) for _ in range(3)])
        assert not (tmp_path / "x.tfrecord").exists()  # nothing visible before close
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        _ = w.sha256


def test_close_is_idempotent_and_leaves_no_temp_files(tmp_path: Path) -> None:
    w = TFRecordShardWriter(tmp_path / "y.tfrecord", 32, 4)
    w.close()
    w.close()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["y.index", "y.tfrecord"]
    assert w.num_records == 0 and (tmp_path / "y.tfrecord").stat().st_size == 0
    assert list(read_tfrecord(tmp_path / "y.tfrecord")) == []


@pytest.fixture
def ten_records(tmp_path: Path) -> tuple[Path, list[Instance], np.ndarray]:
    rng = np.random.default_rng(7)
    insts = [make_instance(rng, int(rng.integers(2, 33)), 4) for _ in range(10)]
    path = tmp_path / "c.tfrecord"
    with TFRecordShardWriter(path, 32, 4) as w:
        w.write(insts)
    return path, insts, read_index(index_path_for(path))


def test_flipped_data_byte_is_caught_only_by_our_crc(ten_records) -> None:
    path, insts, index = ten_records
    raw = bytearray(path.read_bytes())
    start, size = (int(x) for x in index[3])
    # The last data byte is the final segment id (0 padding): flipping it keeps a valid Example.
    raw[start + size - 5] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=f"{path.name}.*data CRC.*offset {start}"):
        list(read_tfrecord(path))
    # The tfrecord package does not check CRCs: it silently returns the damaged value.
    got = load_with_tfrecord_pkg(path, UNPACKED_FEATURES)
    assert len(got) == 10 and got[3]["segment_ids"][-1] == 1
    assert len(list(read_tfrecord(path, verify_crc=False))) == 10


def test_flipped_length_byte_is_caught(ten_records) -> None:
    path, _, index = ten_records
    raw = bytearray(path.read_bytes())
    raw[int(index[5, 0])] ^= 0x04
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=f"length CRC.*offset {int(index[5, 0])}"):
        list(iter_records(path))


@pytest.mark.parametrize("cut", ["mid_data", "mid_header", "footer"])
def test_truncated_file_raises_format_error(ten_records, cut: str) -> None:
    path, _, index = ten_records
    last = int(index[-1, 0])
    keep = {"mid_data": last + 20, "mid_header": last + 6, "footer": int(index[-1].sum()) - 2}
    path.write_bytes(path.read_bytes()[: keep[cut]])
    for verify in (True, False):
        with pytest.raises(FormatError, match=f"truncated.*offset {last}"):
            list(iter_records(path, verify_crc=verify))


def test_foreign_records_are_reported_not_crashed(tmp_path: Path, ten_records) -> None:
    path, _, _ = ten_records
    with pytest.raises(FormatError, match="no feature 'packed_input_ids'"):
        list(read_packed_tfrecord(path))
    junk = tmp_path / "junk.tfrecord"
    junk.write_bytes(
        frame_record(ep.encode_example({"a": np.arange(3)})) + frame_record(b"\x0a\x09")
    )
    with pytest.raises(FormatError, match="not a tf.train.Example.*offset"):
        list(read_tfrecord(junk))


def test_torch_dataset_shards_across_workers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from tfrecord.torch.dataset import TFRecordDataset

    rng = np.random.default_rng(8)
    insts = [make_instance(rng, int(rng.integers(2, 65)), 8) for _ in range(12)]
    path = tmp_path / "t.tfrecord"
    with TFRecordShardWriter(path, 64, 8) as w:
        w.write(insts)
    ds = TFRecordDataset(str(path), str(index_path_for(path)), UNPACKED_FEATURES)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    got = sorted(r["input_ids"].numpy().tolist() for r in loader)
    want = sorted(instances_to_columns(insts, 64, 8)["input_ids"].tolist())
    assert got == want


# --------------------------------------------------------------------------------------------
# The batch encoder: byte-identical to the per-record reference
# --------------------------------------------------------------------------------------------

# sha256 of the sample shards as the per-record writer wrote them before the batch encoder
# (commit ba97877): sample_instances() at S=128, P=20 and first_fit_packs(S=128, K=3) at P=22.
SAMPLE_SHA256 = {
    "u.tfrecord": "d2c8a4f12c43031379b95b491f5e6f5812bb74165469e1bfb2f6854a26e17d26",
    "u.index": "d11c36bfc3ba27efe604be172b1981c58891eff5218fa92e333b7a83070ba5de",
    "p.tfrecord": "4836fc927eca4da6258b207a1200f4a90f70604b193df0ab7d76ac94027e662f",
    "p.index": "0e309b2757f8c9a361ee5e4086347a2aa59ee91a1084016e4396dddaf06a257e",
}


def reference_unpacked(insts: list[Instance], s: int, p: int) -> bytes:
    """The reference writer: per-instance columns, per-record Example encoding and framing."""
    cols = instances_to_columns_loop(insts, s, p)
    return b"".join(frame_record(r) for r in ep.encode_examples(cols))


def reference_packed(packs: list[Pack], s: int, p: int, k: int) -> bytes:
    cols = packs_to_columns_loop(packs, s, p, k)
    return b"".join(frame_record(r) for r in ep.encode_examples(cols))


def test_batch_writer_matches_reference_and_pinned_sha_on_bundled_sample(tmp_path: Path) -> None:
    insts = sample_instances(20)
    packs = first_fit_packs(insts, 128, 3)
    with TFRecordShardWriter(tmp_path / "u.tfrecord", 128, 20) as w:
        w.write(insts)
    with PackedTFRecordShardWriter(tmp_path / "p.tfrecord", 128, 22, 3) as pw:
        pw.write(packs)
    assert (tmp_path / "u.tfrecord").read_bytes() == reference_unpacked(insts, 128, 20)
    assert (tmp_path / "p.tfrecord").read_bytes() == reference_packed(packs, 128, 22, 3)
    for name, digest in SAMPLE_SHA256.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest, name


# Values whose varints take 1, 2, 3, 4 and 5 bytes, on both sides of each boundary; ids run up
# to the vocabulary's last id (30521) and past it (a bigger vocabulary; the int32 maximum).
EDGE_IDS = [0, 1, 127, 128, 16383, 16384, 30521, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**31 - 1]


@st.composite
def edge_instance(draw, s: int, p: int, big: bool) -> Instance:
    length = draw(st.sampled_from([1, 2, s]) | st.integers(1, s))
    pool = EDGE_IDS if big else EDGE_IDS[:7]
    ids = np.array(
        draw(st.lists(st.sampled_from(pool), min_size=length, max_size=length)), np.int32
    )
    seg = np.array(draw(st.lists(st.integers(0, 1), min_size=length, max_size=length)), np.int8)
    m = draw(st.integers(0, min(p, length - 1)))  # 0: an empty masked list
    pos = sorted(draw(st.sets(st.integers(1, length - 1), min_size=m, max_size=m))) if m else []
    mids = draw(st.lists(st.sampled_from(pool), min_size=m, max_size=m))
    return Instance(
        ids, seg, np.array(pos, np.int32), np.array(mids, np.int32), draw(st.integers(0, 1))
    )


@HYP
@given(data=st.data(), s=st.sampled_from([8, 128, 200, 512]), p=st.sampled_from([1, 5, 20, 80]))
def test_batch_writer_matches_reference_on_edge_values(
    tmp_path: Path, data, s: int, p: int
) -> None:
    big = data.draw(st.booleans())
    insts = data.draw(st.lists(edge_instance(s, p, big), min_size=1, max_size=6))
    path = tmp_path / f"e_{s}_{p}.tfrecord"
    with TFRecordShardWriter(path, s, p) as w:
        cut = data.draw(st.integers(0, len(insts)))
        w.write(insts[cut:])  # two batches: the writer's reused buffers change size
        w.write(insts[:cut])
    insts = insts[cut:] + insts[:cut]
    assert path.read_bytes() == reference_unpacked(insts, s, p)
    assert list(read_tfrecord(path)) == insts

    k = data.draw(st.integers(1, 3))
    packs, cur = [], []
    for inst in insts:  # packs within S and the packed prediction budget P + K - 1
        if cur and (
            len(cur) == k
            or sum(map(len, cur)) + len(inst) > s
            or sum(len(i.masked_lm_positions) for i in cur) + len(inst.masked_lm_positions)
            > p + k - 1
        ):
            packs.append(Pack(cur))
            cur = []
        cur.append(inst)
    packs.append(Pack(cur))
    ppath = tmp_path / f"pe_{s}_{p}_{k}.tfrecord"
    with PackedTFRecordShardWriter(ppath, s, p, k) as pw:
        pw.write(packs)
    assert ppath.read_bytes() == reference_packed(packs, s, p, k)
    assert [q.instances for q in read_packed_tfrecord(ppath)] == [q.instances for q in packs]


SCRATCH = eb.EncodeScratch()


@HYP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 12), head=st.integers(0, 12))
def test_encode_example_batch_equals_encode_examples(seed: int, n: int, head: int) -> None:
    """Any columns: widths 0.., floats, bools, negatives and >= 2^28 (the slow path)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for c in range(int(rng.integers(1, 6))):
        w = int(rng.choice([0, 1, 3, 40, 130]))
        kind = int(rng.integers(0, 4))
        if kind == 0:
            cols[f"f{c}"] = rng.standard_normal((n, w)).astype(np.float32)
        elif kind == 1:
            cols[f"b{c}"] = rng.random((n, w)) < 0.5
        else:
            hi = int(rng.choice([1, 128, 200, 2**14 + 1, 2**16 + 5, 2**21 + 1, 2**28 + 1, 2**40]))
            lo = -3 if rng.random() < 0.1 else 0
            cols["k" * int(rng.integers(1, 4)) + str(c)] = rng.integers(lo, hi, (n, w))
    ref = ep.encode_examples(cols)
    for scratch in (None, SCRATCH):  # SCRATCH: reused across examples, stale bytes must not leak
        buf, starts, lengths = eb.encode_example_batch(cols, head=head, tail=4, scratch=scratch)
        assert [bytes(buf[a : a + b]) for a, b in zip(starts, lengths, strict=True)] == ref
        assert buf.shape[0] == sum(len(r) + head + 4 for r in ref)


def test_masked_crc32c_spans_equals_per_record(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    buf = rng.integers(0, 256, 5000).astype(np.uint8)
    starts = np.array([0, 0, 10, 100, 4999, 5000])
    lengths = np.array([0, 9, 1000, 3000, 1, 0])
    got = crc_mod.masked_crc32c_spans(buf, starts, lengths)
    want = [
        crc_mod.masked_crc32c(buf[a : a + n].tobytes())
        for a, n in zip(starts, lengths, strict=True)
    ]
    assert got.dtype == np.uint32 and got.tolist() == want
    assert crc_mod.BACKEND.startswith("crc32c C extension")  # the compiled CRC is installed


def test_encode_example_batch_reused_layout_and_narrow_dtypes() -> None:
    """Batches with one layout in a row (the constant bytes are kept from the previous batch),
    a different layout in between, and int columns of every width, negatives included."""
    scratch = eb.EncodeScratch()

    def batch(seed: int, n: int, hi: int) -> dict[str, np.ndarray]:
        r = np.random.default_rng(seed)
        return {
            "ids": r.integers(0, hi, (n, 9)).astype(np.int32),
            "seg": r.integers(0, 2, (n, 9)).astype(np.int8),
            "u16": r.integers(0, 60000, (n, 3)).astype(np.uint16),
            "w": r.random((n, 2)).astype(np.float32),
        }

    layouts = [batch(1, 20, 30522), batch(2, 20, 30522), batch(3, 20, 100), batch(4, 20, 30522)]
    layouts += [batch(5, 7, 30522), batch(6, 20, 30522)]
    neg8 = {"a": np.array([[-1, 5], [127, -128]], dtype=np.int8)}
    neg16 = {"a": np.array([[-300, 5], [2, 3]], dtype=np.int16)}
    r = np.random.default_rng(7)  # wider than 255 values: the payload byte counts in chunks
    wide = {"w4": r.integers(2**14, 2**21, (3, 600)), "w2": r.integers(0, 2**14, (3, 700))}
    for cols in [*layouts, neg8, neg16, wide, layouts[0]]:
        buf, starts, lengths = eb.encode_example_batch(cols, head=3, tail=4, scratch=scratch)
        got = [bytes(buf[a : a + b]) for a, b in zip(starts, lengths, strict=True)]
        assert got == ep.encode_examples(
            {k: v.astype(np.int64) if v.dtype.kind in "iu" else v for k, v in cols.items()}
        )


def test_instance_columns_with_mixed_dtypes_and_views_equal_the_loop() -> None:
    """Instances whose arrays differ in dtype or are strided views take the general
    concatenation; every batch gives the per-instance reference's columns."""
    rng = np.random.default_rng(12)
    insts = [make_instance(rng, int(rng.integers(2, 30)), 5) for _ in range(40)]
    mixed = list(insts)
    mixed[3] = Instance(
        insts[3].input_ids.astype(np.int64),
        insts[3].segment_ids,
        insts[3].masked_lm_positions,
        insts[3].masked_lm_ids,
        insts[3].next_sentence_label,
    )
    strided = list(insts)
    wide = np.repeat(insts[5].input_ids, 2)
    strided[5] = Instance(
        wide[::2],
        insts[5].segment_ids,
        insts[5].masked_lm_positions,
        insts[5].masked_lm_ids,
        insts[5].next_sentence_label,
    )
    want = instances_to_columns_loop(insts, 32, 5)
    for batch in (insts, mixed, strided):
        got = instances_to_columns(batch, 32, 5)
        assert got.keys() == want.keys()
        for k in want:
            assert got[k].tolist() == want[k].tolist(), k
