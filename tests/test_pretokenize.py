"""Corpus → .bin: exact tokens, document separators, shards, resumable ranks, Ray, bad input."""

from __future__ import annotations

import gzip
import importlib
import json
import subprocess
import sys

import numpy as np
import pytest

from fastgpt import Tokenizer, pretokenize
from fastgpt.data.tokens import TokenFile, read_header

# The module, not the function `fastgpt.pretokenize` that shadows it as a package attribute.
pretok = importlib.import_module("fastgpt.data.pretokenize")


def expected_tokens(tok: Tokenizer, docs: list[str]) -> list[int]:
    return [i for doc in docs for i in [*tok.encode_ordinary(doc), tok.eot_token]]


@pytest.fixture(scope="module")
def tok_dir(cl100k, tmp_path_factory):
    return cl100k.save(tmp_path_factory.mktemp("tok") / "cl100k")


def test_lines_become_documents(cl100k, tok_dir, tmp_path, stdlib_texts):
    docs = [line for text in stdlib_texts[:20] for line in text.splitlines() if line]
    (tmp_path / "train.txt").write_text("\n".join(docs) + "\n\n")
    summary = pretokenize([tmp_path / "train.txt"], tok_dir, progress=False)
    assert summary.outputs == [str(tmp_path / "train.bin")]
    tf = TokenFile(tmp_path / "train.bin")
    assert tf[:].tolist() == expected_tokens(cl100k, docs)
    assert (tf.dtype.name, tf.vocab_size, tf.eot_token) == ("uint32", cl100k.n_vocab, cl100k.eot_token)
    assert summary.documents == len(docs) and summary.tokens == len(tf)
    assert list(tmp_path.iterdir()) and not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("pattern", ["cl100k", "o200k", "gpt2"])
def test_whole_file_documents_are_cut_only_where_it_is_safe(
    cl100k_reference, tmp_path, stdlib_texts, monkeypatch, pattern
):
    """doc_sep=none streams a file in chunks; the ids equal encoding the file at once."""
    tok = Tokenizer.from_ranks(
        cl100k_reference._mergeable_ranks, pattern=pattern, special_tokens={"<|endoftext|>": 100257}
    )
    monkeypatch.setattr(pretok, "CHUNK_BYTES", 2000)
    text = "".join(stdlib_texts[:40])
    (tmp_path / "book.txt").write_text(text)
    summary = pretokenize(
        tmp_path / "book.txt", tok, tmp_path / "book.bin", doc_sep="none", batch_bytes=20_000, progress=False
    )
    assert summary.documents == 1
    assert TokenFile(tmp_path / "book.bin")[:].tolist() == expected_tokens(tok, [text])


@pytest.mark.parametrize("batch_bytes", [1_000, 30_000, 8 << 20])
@pytest.mark.parametrize("threads", [1, 2])
def test_batch_sizes_and_threads_do_not_change_the_tokens(
    cl100k, tok_dir, tmp_path, stdlib_texts, batch_bytes, threads
):
    docs = [line for line in "".join(stdlib_texts[30:40]).splitlines() if line]
    (tmp_path / "in.txt").write_text("\n".join(docs))
    pretokenize(
        tmp_path / "in.txt", tok_dir, tmp_path / "out.bin", threads=threads, batch_bytes=batch_bytes, progress=False
    )
    assert TokenFile(tmp_path / "out.bin")[:].tolist() == expected_tokens(cl100k, docs)


def test_text_files_go_to_rust_as_bytes_and_invalid_utf8_is_replaced_and_counted(cl100k, tmp_path, stdlib_texts):
    """Blocks of a text file are handed over undecoded; one that is not UTF-8 is decoded in
    Python (invalid bytes become U+FFFD, counted), as a str would have been, and nothing of
    it is written twice."""
    good = [line for line in "".join(stdlib_texts[40:44]).splitlines() if line.strip()]
    lines = [line.encode() for line in good[:60]]
    lines += ["π ≈ 3.14 — ça va\r".encode(), b"bad \xff\xfe here " + "\ufffd real".encode()]
    raw = b"\n".join(lines + [line.encode() for line in good[60:]]) + b"\n"
    (tmp_path / "in.txt").write_bytes(raw)
    docs = [line.rstrip("\r") for line in raw.decode("utf-8", "replace").split("\n") if line.rstrip("\r")]
    summary = pretokenize(tmp_path / "in.txt", cl100k, tmp_path / "out.bin", batch_bytes=2_000, progress=False)
    assert TokenFile(tmp_path / "out.bin")[:].tolist() == expected_tokens(cl100k, docs)
    assert summary.invalid_utf8 == 2 and summary.documents == len(docs)

    from fastgpt import _core

    writer = _core.TokenWriter(str(tmp_path / "w.bin"), cl100k.n_vocab, cl100k.eot_token, None)
    assert writer.write_lines(cl100k._core, "a\nb\n") == writer.write_lines(cl100k._core, b"a\nb\n")
    with pytest.raises(UnicodeDecodeError, match="can't decode byte 0xff in position 7"):
        writer.write_lines(cl100k._core, b"ok\nbad \xff\n")
    assert writer.num_tokens == 8  # the two good blocks only: a, eot, b, eot twice
    writer.abort()


def test_llm_c_layout_reads_our_files(byte_tokenizer, tmp_path):
    """A reader written from llm.c's published header layout, independent of fastgpt.data."""
    (tmp_path / "x.txt").write_text("hi\nyo\n")
    pretokenize(tmp_path / "x.txt", byte_tokenizer, tmp_path / "x.bin", progress=False)
    raw = (tmp_path / "x.bin").read_bytes()
    header = np.frombuffer(raw[:1024], dtype="<i4")
    assert (header[0], header[1]) == (20240520, 1)  # magic and version of uint16 token files
    tokens = np.frombuffer(raw[1024:], dtype="<u2")
    assert header[2] == len(tokens) == 6
    assert tokens.tolist() == [104, 105, 256, 121, 111, 256]


def test_a_killed_run_leaves_no_complete_looking_file_and_a_rerun_finishes(tok_dir, tmp_path, stdlib_texts):
    import signal
    import time

    big = tmp_path / "big.txt"
    big.write_text("".join(stdlib_texts[:300]) * 3)
    out = tmp_path / "big.bin"
    code = f"from fastgpt import pretokenize; pretokenize({str(big)!r}, {str(tok_dir)!r}, {str(out)!r}, threads=1, batch_bytes=100_000, progress=False)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    while not list(tmp_path.glob(".big.bin.tmp-*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run finished before it could be killed; make the input bigger"
    summary = pretokenize(big, tok_dir, out, progress=False)
    assert TokenFile(out).header.num_tokens == summary.tokens > 0
    assert not list(tmp_path.glob(".big.bin.tmp-*")), "the rerun removes the dead run's temporary file"


def test_blank_jsonl_and_compressed_inputs(cl100k, tok_dir, tmp_path):
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(b"para one\nstill one\n\npara two\n"))
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "json doc"}) + "\n")
    pretokenize([tmp_path / "a.txt.gz"], tok_dir, tmp_path / "a.bin", doc_sep="blank", progress=False)
    assert TokenFile(tmp_path / "a.bin")[:].tolist() == expected_tokens(cl100k, ["para one\nstill one", "para two"])
    pretokenize([tmp_path / "b.jsonl"], tok_dir, tmp_path / "b.bin", text_field="body", progress=False)
    assert TokenFile(tmp_path / "b.bin")[:].tolist() == expected_tokens(cl100k, ["json doc"])


def test_small_vocabularies_write_uint16_and_threads_do_not_change_output(byte_tokenizer, tmp_path, stdlib_texts):
    (tmp_path / "x.txt").write_text("\n".join(stdlib_texts[1][:50_000].splitlines()))
    one = pretokenize(
        tmp_path / "x.txt", byte_tokenizer, tmp_path / "one.bin", threads=1, batch_bytes=5000, progress=False
    )
    two = pretokenize(
        tmp_path / "x.txt", byte_tokenizer, tmp_path / "two.bin", threads=2, batch_bytes=5000, progress=False
    )
    assert one.tokens == two.tokens
    assert (tmp_path / "one.bin").read_bytes() == (tmp_path / "two.bin").read_bytes()
    assert read_header(tmp_path / "one.bin").dtype.name == "uint16"


def test_shards_have_exact_sizes(cl100k, tok_dir, tmp_path, stdlib_texts):
    (tmp_path / "c.txt").write_text("".join(stdlib_texts[:10]))
    whole = pretokenize(tmp_path / "c.txt", tok_dir, tmp_path / "whole.bin", progress=False)
    sharded = pretokenize(tmp_path / "c.txt", tok_dir, tmp_path / "s.bin", shard_tokens=1000, progress=False)
    files = [TokenFile(p) for p in sharded.outputs]
    assert [p.split("/")[-1] for p in sharded.outputs][:2] == ["s_000000.bin", "s_000001.bin"]
    assert all(len(f) == 1000 for f in files[:-1]) and 0 < len(files[-1]) <= 1000
    assert np.concatenate([f[:] for f in files]).tolist() == TokenFile(whole.outputs[0])[:].tolist()


def test_ranks_split_inputs_and_skip_finished_shards(tok_dir, tmp_path, monkeypatch):
    for i in range(5):
        (tmp_path / f"in{i}.txt").write_text(f"document {i}\n")
    inputs = [str(tmp_path / "in*.txt")]
    out = tmp_path / "out" / "train.bin"
    first = pretokenize(inputs, tok_dir, out, rank=1, world_size=2, progress=False)
    assert first.outputs == [str(tmp_path / "out" / "train.00001-of-00002.bin")] and first.files == 2
    again = pretokenize(inputs, tok_dir, out, rank=1, world_size=2, progress=False)
    assert again.skipped
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    slurm = pretokenize(inputs, tok_dir, out, progress=False)
    assert slurm.outputs == [str(tmp_path / "out" / "train.00000-of-00002.bin")] and slurm.files == 3
    with pytest.raises(ValueError, match="rank must be in"):
        pretokenize(inputs, tok_dir, out, rank=2, world_size=2, progress=False)


def test_ray_backend_equals_local(tok_dir, tmp_path):
    ray = pytest.importorskip("ray")
    for i in range(3):
        (tmp_path / f"in{i}.txt").write_text(f"ray document {i}\nsecond line {i}\n")
    inputs = [str(tmp_path / "in*.txt")]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = pretokenize(
            inputs, str(tok_dir), tmp_path / "ray" / "t.bin", backend="ray", world_size=2, progress=False
        )
    finally:
        ray.shutdown()
    for r in range(2):
        local = pretokenize(inputs, tok_dir, tmp_path / "local" / "t.bin", rank=r, world_size=2, progress=False)
        assert (tmp_path / "ray" / f"t.0000{r}-of-00002.bin").read_bytes() == open(local.outputs[0], "rb").read()
    assert [o.split("/")[-1] for o in remote.outputs] == ["t.00000-of-00002.bin", "t.00001-of-00002.bin"]
    assert remote.files == 3 and remote.documents == 6 and not remote.skipped


def test_pt_format(cl100k, tok_dir, tmp_path):
    torch = pytest.importorskip("torch")
    (tmp_path / "p.txt").write_text("one\ntwo\n")
    pretokenize(tmp_path / "p.txt", tok_dir, format="pt", progress=False)
    assert torch.load(tmp_path / "p.pt").tolist() == expected_tokens(cl100k, ["one", "two"])


def test_bad_input_leaves_no_output(tok_dir, tmp_path):
    (tmp_path / "good.txt").write_text("fine\n" * 1000)
    (tmp_path / "z.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(ValueError, match="z.jsonl, line 2: not valid JSON"):
        pretokenize([tmp_path / "good.txt", tmp_path / "z.jsonl"], tok_dir, tmp_path / "out.bin", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.txt", "z.jsonl"]
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        pretokenize(tmp_path / "missing.txt", tok_dir, progress=False)
    with pytest.raises(ValueError, match="overwrite an input"):
        pretokenize(tmp_path / "good.txt", tok_dir, tmp_path / "good.txt", progress=False)
    with pytest.raises(ValueError, match="doc_sep"):
        pretokenize(tmp_path / "good.txt", tok_dir, doc_sep="page", progress=False)


def fastgpt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastgpt", *args], capture_output=True, text=True)


def test_cli_file_and_info(cl100k, tok_dir, tmp_path):
    (tmp_path / "train.txt").write_text("hello world\nsecond doc\n")
    run = fastgpt("pretokenize", "file", str(tmp_path / "train.txt"), "--tokenizer", str(tok_dir))
    assert run.returncode == 0, run.stderr
    assert "train.bin" in run.stdout and "2 documents" in run.stdout
    info = fastgpt("pretokenize", "info", str(tmp_path / "train.bin"), "--tokenizer", str(tok_dir))
    assert info.returncode == 0, info.stderr
    for text in ["uint32", "tokens: 6", "documents: 2", f"vocab_size: {cl100k.n_vocab}", "hello world<|endoftext|>"]:
        assert text in info.stdout
    other = Tokenizer.from_ranks({bytes([i]): i for i in range(256)}, pattern="gpt2").save(tmp_path / "bytes")
    mismatch = fastgpt("pretokenize", "info", str(tmp_path / "train.bin"), "--tokenizer", str(other))
    assert (
        mismatch.returncode == 1
        and f"vocabulary of {cl100k.n_vocab} tokens" in mismatch.stderr
        and "has 256" in mismatch.stderr
    )
    (tmp_path / "bad.bin").write_bytes(b"\x00" * 2000)
    bad = fastgpt("pretokenize", "info", str(tmp_path / "bad.bin"))
    assert bad.returncode == 1 and "not a .bin token file" in bad.stderr and "Traceback" not in bad.stderr


def _kill_when(proc: subprocess.Popen, ready, what: str, sig: int) -> None:
    """Sends `sig` to `proc` once `ready()` holds (or fails the test if `proc` ends first)."""
    import time

    deadline = time.time() + 60
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before {what}; make the input bigger")
    proc.send_signal(sig)
    proc.wait(timeout=60)


def test_a_killed_sharded_run_is_not_complete_on_rerun(tok_dir, tmp_path, stdlib_texts):
    """Defect 10: with --shard_tokens and ranks, a run killed after its first piece said
    "already complete, skipped" on the rerun, because only piece _000000 was checked."""

    big = tmp_path / "a.txt"
    big.write_text("".join(stdlib_texts[:100]) * 2)
    (tmp_path / "b.txt").write_text("other shard\n")
    out = tmp_path / "out" / "t.bin"
    args = dict(rank=0, world_size=2, shard_tokens=2000, threads=1, batch_bytes=100_000, progress=False)
    code = f"from fastgpt import pretokenize; pretokenize([{str(big)!r}, {str(tmp_path / 'b.txt')!r}], {str(tok_dir)!r}, {str(out)!r}, **{args!r})"
    proc = subprocess.Popen([sys.executable, "-c", code])
    # Several pieces written (finished or not): past the point where the first was complete.
    _kill_when(proc, lambda: len([p for p in out.parent.glob("*") if p.name != "t.bin"]) >= 3, "3 pieces", 9)
    rerun = pretokenize([big, tmp_path / "b.txt"], tok_dir, out, **args)
    assert not rerun.skipped
    whole = pretokenize(big, tok_dir, tmp_path / "whole.bin", progress=False)
    pieces = [TokenFile(p)[:] for p in rerun.outputs]
    assert np.concatenate(pieces).tolist() == TokenFile(whole.outputs[0])[:].tolist()
    assert rerun.outputs[0].endswith("t.00000-of-00002_000000.bin")
    assert pretokenize([big, tmp_path / "b.txt"], tok_dir, out, **args).skipped, "now it is complete"
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]


def test_a_failing_sharded_run_leaves_no_pieces(tok_dir, tmp_path):
    """Defect 13: a failing --shard_tokens run left complete-looking out_00000N.bin files."""
    (tmp_path / "good.txt").write_text("fine words here\n" * 2000)
    (tmp_path / "z.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(ValueError, match="z.jsonl, line 2"):
        pretokenize(
            [tmp_path / "good.txt", tmp_path / "z.jsonl"],
            tok_dir,
            tmp_path / "out.bin",
            shard_tokens=100,
            batch_bytes=1000,
            progress=False,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.txt", "z.jsonl"]


def test_output_an_existing_directory_is_refused_up_front(tok_dir, tmp_path):
    """Defect 14: --output DIR wrote a full hidden temporary into the parent, then an error naming it."""
    (tmp_path / "in.txt").write_text("some text\n" * 100)
    (tmp_path / "outdir").mkdir()
    run = fastgpt(
        "pretokenize",
        "file",
        str(tmp_path / "in.txt"),
        "--tokenizer",
        str(tok_dir),
        "--output",
        str(tmp_path / "outdir"),
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert f"{tmp_path / 'outdir'} is a directory" in run.stderr and ".tmp" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "outdir"] and not list(
        (tmp_path / "outdir").iterdir()
    )


def test_sigterm_cleans_up_like_ctrl_c(tok_dir, tmp_path, stdlib_texts):
    """Defect 15: SIGTERM (what Slurm sends) left the hidden temporary file behind."""
    import signal

    big = tmp_path / "big.txt"
    big.write_text("".join(stdlib_texts[:300]) * 3)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastgpt",
            "pretokenize",
            "file",
            str(big),
            "--tokenizer",
            str(tok_dir),
            "--threads",
            "1",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    _kill_when(proc, lambda: bool(list(tmp_path.glob(".big.bin.tmp-*"))), "the temporary file appeared", signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM and "fastgpt: terminated" in proc.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]
