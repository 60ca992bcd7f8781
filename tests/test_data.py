"""fastgpt.data.tokens: the .bin format (llm.c layout + fastgpt fields), memmap reading, windows and batches."""

from __future__ import annotations

import numpy as np
import pytest

from fastgpt.data.tokens import (
    HEADER_BYTES,
    Batches,
    TokenDataset,
    TokenFile,
    load_tokens,
    read_header,
    write_tokens,
)


def llmc_read(path):
    """A reader written from llm.c's published layout (dev/data/data_common.py), not from ours."""
    header = np.fromfile(path, dtype=np.int32, count=256)
    assert header[0] in (20240520, 20240801)
    dtype = np.uint16 if header[0] == 20240520 else np.uint32
    assert header[1] == (1 if dtype is np.uint16 else 7)
    ntok = int(header[2])
    with open(path, "rb") as f:
        f.seek(256 * 4)
        tokens = np.frombuffer(f.read(), dtype=dtype)
    assert len(tokens) == ntok
    return tokens


@pytest.mark.parametrize(
    "vocab,dtype", [(257, np.uint16), (65536, np.uint16), (65537, np.uint32), (200_019, np.uint32)]
)
def test_roundtrip_and_llmc_compatibility(tmp_path, vocab, dtype):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab, size=1000)
    path = write_tokens(tmp_path / "a.bin", tokens, vocab_size=vocab, eot_token=vocab - 1)
    tf = TokenFile(path)
    assert len(tf) == 1000 and tf.dtype == dtype and tf.vocab_size == vocab and tf.eot_token == vocab - 1
    assert np.array_equal(tf[:], tokens) and np.array_equal(llmc_read(path), tokens)
    assert path.stat().st_size == HEADER_BYTES + 1000 * np.dtype(dtype).itemsize
    h = np.fromfile(path, dtype="<i4", count=8)
    assert list(h[2:8]) == [1000, 1, 1000, 0, vocab, vocab - 1]  # int32 count, fastgpt v1, 64-bit count, vocab, eot
    assert not [p for p in tmp_path.iterdir() if p.name != "a.bin"]  # no temporary file left behind


def test_no_eot_and_empty_file(tmp_path):
    tf = TokenFile(write_tokens(tmp_path / "e.bin", [], vocab_size=10))
    assert len(tf) == 0 and tf.eot_token is None and tf[:].size == 0


def test_plain_llmc_file_without_fastgpt_fields(tmp_path):
    header = np.zeros(256, dtype="<i4")
    header[:3] = 20240520, 1, 3
    path = tmp_path / "llmc.bin"
    path.write_bytes(header.tobytes() + np.array([5, 6, 7], dtype="<u2").tobytes())
    tf = TokenFile(path)
    assert tf[:].tolist() == [5, 6, 7] and tf.vocab_size is None and tf.header.fastgpt_version == 0


def test_headerless_nanogpt_file(tmp_path):
    path = tmp_path / "train.bin"
    np.arange(1000, dtype=np.uint16).tofile(path)
    assert TokenFile(path, headerless=True)[:].tolist() == list(range(1000))
    with pytest.raises(ValueError, match="not a .bin token file.*headerless"):
        TokenFile(path)


def corrupt(path, slot=None, value=None, truncate=0):
    data = bytearray(path.read_bytes())
    if slot is not None:
        data[slot * 4 : slot * 4 + 4] = np.array([value], dtype="<i4").tobytes()
    path.write_bytes(bytes(data[: len(data) - truncate]))
    return path


@pytest.mark.parametrize(
    "slot,value,truncate,message",
    [
        (0, 12345, 0, "magic 12345"),
        (1, 3, 0, "unknown version 3"),
        (3, 9, 0, "unknown fastgpt header version 9"),
        (2, 7, 0, "int32 count 7 disagrees"),
        (None, None, 2, "size mismatch.*truncated"),
        (4, 11, 0, "disagrees"),
        (6, 70000, 0, "vocabulary size 70000 does not fit uint16"),
    ],
)
def test_corrupt_files_name_the_file_and_problem(tmp_path, slot, value, truncate, message):
    path = corrupt(write_tokens(tmp_path / "c.bin", np.arange(10), vocab_size=300), slot, value, truncate)
    with pytest.raises(ValueError, match=message) as info:
        TokenFile(path)
    assert str(path) in str(info.value)


def test_short_header_and_missing_file(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="short.bin: truncated .bin file"):
        read_header(path)
    with pytest.raises(FileNotFoundError):
        TokenFile(tmp_path / "missing.bin")


def test_write_rejects_bad_tokens(tmp_path):
    with pytest.raises(ValueError, match="must be in 0..255"):
        write_tokens(tmp_path / "x.bin", [0, 256], vocab_size=256)
    with pytest.raises(ValueError, match="must be in 0..255"):
        write_tokens(tmp_path / "x.bin", [-1], vocab_size=256)
    with pytest.raises(ValueError, match="1-D"):
        write_tokens(tmp_path / "x.bin", [[1, 2]], vocab_size=256)
    with pytest.raises(ValueError, match="eot_token 300"):
        write_tokens(tmp_path / "x.bin", [1], vocab_size=256, eot_token=300)
    assert not list(tmp_path.iterdir())  # a failed write leaves nothing


def test_windows_are_shifted_by_one_and_stay_inside_a_file(tmp_path):
    write_tokens(tmp_path / "s0.bin", np.arange(0, 50), vocab_size=1000)
    write_tokens(tmp_path / "s1.bin", np.arange(500, 530), vocab_size=1000)
    ds = TokenDataset(str(tmp_path / "s*.bin"), seq_len=8)
    assert ds.num_tokens == 80 and len(ds) == 49 // 8 + 29 // 8 and ds.num_starts == 42 + 22
    for i in range(len(ds)):
        x, y = ds[i]
        assert np.array_equal(y[:-1], x[1:]) and np.array_equal(y, x + 1)  # consecutive ids: one file
    for start in range(ds.num_starts):
        x, y = ds.start_window(start)
        assert x.shape == (8,) and np.array_equal(y, x + 1)
    assert ds.start_window(0)[0][0] == 0 and ds.start_window(42)[0][0] == 500
    assert TokenDataset(tmp_path, seq_len=8).paths == ds.paths  # a directory means its *.bin


def test_batches_deterministic_and_split_exactly_across_ranks(tmp_path):
    write_tokens(tmp_path / "d.bin", np.arange(2000) % 997, vocab_size=1000)
    ds = TokenDataset(tmp_path / "d.bin", seq_len=16)
    for shuffle in (True, False):
        x, y = ds.batch(3, 8, shuffle=shuffle, seed=1)
        assert x.shape == (8, 16) and x.dtype == np.int64
        assert np.array_equal(x, ds.batch(3, 8, shuffle=shuffle, seed=1)[0])
        parts = [ds.batch(3, 4, shuffle=shuffle, seed=1, rank=r, world_size=2)[0] for r in range(2)]
        assert np.array_equal(np.concatenate(parts), x)  # two ranks see exactly one process's global batch
    assert not np.array_equal(ds.batch(0, 8, shuffle=True, seed=1)[0], ds.batch(1, 8, shuffle=True, seed=1)[0])
    assert np.array_equal(ds.batch(0, 2, shuffle=False)[0], np.stack([ds[0][0], ds[1][0]]))


def test_batch_iterator_resumes_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    write_tokens(tmp_path / "d.bin", np.arange(3000) % 250, vocab_size=256)
    ds = TokenDataset(tmp_path / "d.bin", seq_len=12)
    a = Batches(ds, 4, seed=5)
    first = [next(a) for _ in range(6)]
    assert first[0][0].dtype == torch.int64 and first[0][0].shape == (4, 12)
    b = Batches(ds, 4, seed=5)
    for _ in range(3):
        next(b)
    c = Batches(ds, 4, seed=0)
    c.load_state_dict(b.state_dict())
    for want, got in zip(first[3:], (next(c) for _ in range(3))):
        assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])
    assert c.epoch == pytest.approx(6 * 4 / len(ds))


def test_dataset_errors(tmp_path):
    path = write_tokens(tmp_path / "v.bin", np.arange(20), vocab_size=300)
    with pytest.raises(ValueError, match="seq_len 64 is longer than the data.*v.bin has 20"):
        TokenDataset(path, seq_len=64)
    with pytest.raises(ValueError, match="v.bin: vocabulary mismatch.*300.*257"):
        TokenDataset(path, seq_len=4, vocab_size=257)
    raw = tmp_path / "raw.bin"
    np.array([1, 2, 3, 400, 5, 6], dtype=np.uint16).tofile(raw)  # headerless: no vocabulary to check up front
    ds = TokenDataset(raw, seq_len=5, headerless=True, vocab_size=257)
    with pytest.raises(ValueError, match="raw.bin: token id 400.*vocabulary of 257"):
        ds[0]
    with pytest.raises(FileNotFoundError, match=r"nothing\*.bin: the pattern matches no files"):
        TokenDataset(str(tmp_path / "nothing*.bin"), seq_len=4)


def test_pt_and_txt_inputs(tmp_path, byte_tokenizer):
    torch = pytest.importorskip("torch")
    torch.save(torch.tensor([3, 1, 4, 1, 5]), tmp_path / "t.pt")
    assert load_tokens(tmp_path / "t.pt").tolist() == [3, 1, 4, 1, 5]
    (tmp_path / "t.txt").write_text("héllo")
    assert load_tokens(tmp_path / "t.txt", tokenizer=byte_tokenizer).tolist() == list("héllo".encode()) + [256]
    ds = TokenDataset(tmp_path / "t.txt", seq_len=3, tokenizer=byte_tokenizer)
    assert ds[0][0].tolist() == list(b"h\xc3\xa9")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        load_tokens(tmp_path / "t.txt")


def test_vocabulary_of_2_pow_32_round_trips_between_rust_and_python(tmp_path, byte_tokenizer):
    """The header holds the vocabulary as uint32, where 2^32 is 0: Rust wrote 0 and read 2^32,
    Python rejected 0 as corrupt. One implementation now reads and writes it."""
    from fastgpt import _core

    path = write_tokens(tmp_path / "big_vocab.bin", [0, 2**32 - 1], vocab_size=2**32, eot_token=2**32 - 1)
    assert read_header(path).vocab_size == 2**32 and TokenFile(path)[:].tolist() == [0, 2**32 - 1]
    writer = _core.TokenWriter(str(tmp_path / "rust.bin"), 2**32, None, None)
    writer.write_texts(byte_tokenizer._core, ["ab"], [True])
    (tmp,) = writer.finish()
    assert read_header(tmp).vocab_size == 2**32 and TokenFile(tmp)[:].tolist() == [97, 98]
    assert np.fromfile(tmp, dtype="<u4", count=7)[6] == 0  # the slot itself: 2^32 wraps to 0
