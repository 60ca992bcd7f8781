"""BPE training: merges against a pure-Python reference and Hugging Face's trainer, 64-bit
counts, determinism, the saved directory through tiktoken and `tokenizers`, and the CLI."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
import warnings
from collections import Counter

import pytest

from fastgpt import Tokenizer, _core
from fastgpt.data import inputs as corpus
from fastgpt.tokenizer import bpe_train
from fastgpt.tokenizer import huggingface as hf_format
from helpers.references import prose_text, stdlib_sources


def merge_pair(symbols: list[int], a: int, b: int, c: int) -> list[int]:
    """`symbols` with each non-overlapping (a, b), left to right, replaced by c."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
            out.append(c)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def reference_train(word_counts: dict[bytes, int], n_tokens: int) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
    """The obvious trainer: recount every pair before each merge. Highest count wins; ties
    go to the lowest (left id, right id); a merge spelling an existing token reuses its id."""
    tokens = [bytes([b]) for b in range(256)]
    ids = {t: i for i, t in enumerate(tokens)}
    words = [(list(w), n) for w, n in word_counts.items()]
    merges = []
    while len(tokens) < n_tokens:
        counts: Counter = Counter()
        for symbols, n in words:
            for pair in zip(symbols, symbols[1:]):
                counts[pair] += n
        if not counts:
            break
        a, b = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
        joined = tokens[a] + tokens[b]
        if joined not in ids:
            ids[joined] = len(tokens)
            tokens.append(joined)
        c = ids[joined]
        merges.append((tokens[a], tokens[b]))
        words[:] = [(merge_pair(symbols, a, b, c), n) for symbols, n in words]
    return tokens, merges


def word_counts(texts, pattern: str) -> dict[bytes, int]:
    counts: Counter = Counter()
    for text in texts:
        counts.update(piece.encode() for piece in _core.split(pattern, text))
    return dict(counts)


def core_train(texts, pattern: str, n_tokens: int, threads: int | None, batch: int = 1000):
    trainer = _core.BpeTrainer(pattern, [], 0, threads)
    for i in range(0, len(texts), batch):
        trainer.add_texts(texts[i : i + batch])
    trainer.start_merging(n_tokens, 0)
    while not trainer.finished:
        trainer.merge(37)
    tokens = [t for t, _ in trainer.ranks()]
    return tokens, [(tokens[a], tokens[b]) for a, b, _ in trainer.merges()]


def random_texts(seed: int, n: int, alphabet: str = "abcde") -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 12))]
        texts.append(" ".join(words) + rng.choice(["", "\n", "  ", "!"]))
    return texts


@pytest.fixture(scope="module")
def stdlib_sample() -> list[str]:
    """About 150 KB of the standard library's sources, a fixed selection."""
    texts, size = [], 0
    for path in stdlib_sources()[::40]:
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        size += len(text)
        if size > 150_000:
            break
    return texts


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threads", [1, 2])
def test_random_corpora_match_the_reference(seed, threads):
    texts = random_texts(seed, 300, alphabet="abcde" if seed != 2 else "ab")
    counts = word_counts(texts, "gpt2")
    for n_tokens in (260, 300, 420):
        expected = reference_train(counts, n_tokens)
        assert core_train(texts, "gpt2", n_tokens, threads, batch=37) == expected


@pytest.mark.parametrize("threads", [1, 2])
def test_real_text_matches_the_reference(stdlib_sample, threads):
    counts = word_counts(stdlib_sample, "cl100k")
    expected_tokens, expected_merges = reference_train(counts, 256 + 150)
    for n_tokens in (256 + 20, 256 + 150):
        tokens, merges = core_train(stdlib_sample, "cl100k", n_tokens, threads, batch=5)
        assert merges == expected_merges[: n_tokens - 256]
        assert tokens == expected_tokens[:n_tokens]


def test_same_result_whatever_the_threads_and_batches(stdlib_sample):
    one = core_train(stdlib_sample, "o200k", 700, 1, batch=1000)
    assert core_train(stdlib_sample, "o200k", 700, 2, batch=3) == one
    tok = Tokenizer.train(iter(stdlib_sample), 701, threads=2, progress=False)
    assert [tok.token_bytes(i) for i in range(700)] == one[0]
    # One long text is cut into runs, with the same counts.
    whole = "".join(stdlib_sample)
    assert len(list(bpe_train.iterator_texts([whole], corpus.CorpusStats(), bpe_train.Budget(None, None)))) > 1
    tok = Tokenizer.train(iter([whole]), 701, pattern="o200k", threads=2, progress=False)
    assert [tok.token_bytes(i) for i in range(700)] == core_train([whole], "o200k", 700, 1)[0]


def test_tie_rule_is_lowest_pair():
    # (c, d) and (a, b) both occur 6 times: the lower ids (a, b) merge first.
    tokens, merges = core_train(["cd", "ab"] * 6, "gpt2", 258, 1)
    assert merges == [(b"a", b"b"), (b"c", b"d")]


def test_counts_past_two_to_the_thirty_one():
    trainer = _core.BpeTrainer("gpt2", [], 0, 1)
    trainer.add_word(b"xy", (1 << 32) - 1)
    trainer.add_word(b"ab", 1 << 31)
    trainer.add_word(b"abab", 1 << 30)  # (a, b) totals 2^32: one more than (x, y)
    trainer.start_merging(258, 0)
    trainer.merge(10)
    tokens = [t for t, _ in trainer.ranks()]
    assert tokens[256:] == [b"ab", b"xy"]


@pytest.mark.parametrize("pattern", ["gpt2", "cl100k", "o200k"])
def test_file_runs_cut_where_no_piece_spans(tmp_path, monkeypatch, stdlib_sample, pattern):
    monkeypatch.setattr(bpe_train, "CHUNK_CHARS", 500)
    monkeypatch.setattr(corpus, "MAX_CHUNK_CHARS", 10**9)
    text = "".join(stdlib_sample[:6]) + "\n\nProse.\r\nMore  \n  text\n" + prose_text()[:20000]
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8", newline="")
    expected = word_counts([text], pattern)
    # Blocks (no limits) and lines (with a limit) take different paths.
    for budget in (bpe_train.Budget(None, None), bpe_train.Budget(10**9, None)):
        runs = list(bpe_train.file_texts([path], "text", corpus.CorpusStats(), budget))
        assert len(runs) > 20 and "".join(runs) == text
        assert word_counts(runs, pattern) == expected


def test_runs_without_a_safe_place_are_cut_at_the_maximum(monkeypatch):
    monkeypatch.setattr(corpus, "MAX_CHUNK_CHARS", 40)
    text = "  indented\n" * 20 + "word\nnext\n"
    runs = []
    gen = corpus.safe_runs(text, 10)
    try:
        while True:
            runs.append(next(gen))
    except StopIteration as stop:
        tail = stop.value
    assert "".join(runs) + tail == text
    assert all(len(r) <= 40 for r in runs) and len(runs) >= 5


def hf_train(texts: list[str], pattern: str, vocab_size: int):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Regex, models, pre_tokenizers, trainers

    regex = Tokenizer.from_ranks({bytes([b]): b for b in range(256)}, pattern).pattern
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(hf_format.oniguruma_pattern(regex)), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [
        tuple(hf_format.text_to_token(part, "hf") for part in (m.split(" ") if isinstance(m, str) else m))
        for m in merges
    ]


def tie_free_prefix(counts: dict[bytes, int], n_merges: int) -> int:
    """How many of the first merges the reference makes with a unique best count."""
    tokens = [bytes([b]) for b in range(256)]
    words = [(list(w), n) for w, n in counts.items()]
    for step in range(n_merges):
        pairs: Counter = Counter()
        for symbols, n in words:
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += n
        top = pairs.most_common(2)
        if not top or (len(top) == 2 and top[0][1] == top[1][1]):
            return step
        (a, b), _ = top[0]
        tokens.append(tokens[a] + tokens[b])
        c = len(tokens) - 1
        words[:] = [(merge_pair(symbols, a, b, c), n) for symbols, n in words]
    return n_merges


def test_matches_hugging_face_on_real_text_until_the_first_tie(stdlib_sample):
    # Hugging Face breaks ties by its own ids, which order the bytes differently (space is
    # 'Ġ', after the letters), so the lists agree up to the first tied merge.
    counts = word_counts(stdlib_sample, "cl100k")
    n_merges = tie_free_prefix(counts, 150)
    assert n_merges >= 25, "the corpus should have a long tie-free prefix"
    ours = core_train(stdlib_sample, "cl100k", 256 + 150, 2)[1]
    theirs = hf_train(stdlib_sample, "cl100k", 256 + 150)
    assert ours[:n_merges] == theirs[:n_merges]


def test_matches_hugging_face_with_ties_where_the_ids_agree():
    # Lowercase letters have the same order in both id spaces, and newline pieces make no
    # pairs: every tie then breaks the same way (lowest pair of ids) and all merges agree.
    rng = random.Random(5)
    vocab = sorted({"".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 7))) for _ in range(150)})
    words = [f"{word}\n" for word in vocab for _ in range(rng.randint(1, 30))]
    rng.shuffle(words)
    texts = ["".join(words[i : i + 50]) for i in range(0, len(words), 50)]
    assert tie_free_prefix(word_counts(texts, "cl100k"), 100) < 20, "the corpus should have ties"
    ours = core_train(texts, "cl100k", 256 + 300, 2)[1]
    assert len(ours) > 250
    assert ours == hf_train(texts, "cl100k", 256 + 300)


def test_matches_rustbpe_on_real_text(stdlib_sample):
    # rustbpe breaks ties like fastgpt (lowest pair of ids, bytes as ids 0-255), so the whole
    # merge list agrees, ties included.
    rustbpe = pytest.importorskip("rustbpe")
    regex = Tokenizer.from_ranks({bytes([b]): b for b in range(256)}, "cl100k").pattern
    theirs = rustbpe.Tokenizer()
    theirs.train_from_iterator(iter(stdlib_sample), 256 + 400, pattern=regex)
    ranks = dict(theirs.get_mergeable_ranks())
    assert core_train(stdlib_sample, "cl100k", 256 + 400, 2)[0] == [bytes(t) for t in sorted(ranks, key=ranks.get)]


def test_saved_tokenizer_encodes_like_tiktoken_and_tokenizers(tmp_path, stdlib_sample):
    tiktoken = pytest.importorskip("tiktoken")
    tokenizers = pytest.importorskip("tokenizers")
    tok = Tokenizer.train(iter(stdlib_sample), 1200, pattern="cl100k", progress=False)
    directory = tok.save(tmp_path / "tok")
    meta = json.loads((directory / "fastgpt.json").read_text())
    ranks = {}
    for line in (directory / "vocab.tiktoken").read_text().splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    reference = tiktoken.Encoding(
        "trained", pat_str=meta["pattern"]["regex"], mergeable_ranks=ranks, special_tokens=meta["special_tokens"]
    )
    hf = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    loaded = Tokenizer.load(directory)
    held_out = [p.read_text(encoding="utf-8", errors="replace") for p in stdlib_sources()[7::97][:20]] + [
        prose_text()[:100_000]
    ]
    for text in held_out:
        ids = tok.encode(text)
        assert ids == reference.encode(text)
        assert ids == hf.encode(text).ids
        assert ids == loaded.encode(text)
        assert tok.decode(ids) == text
    eot = tok.encode("x<|endoftext|>", allowed_special="all")
    assert eot[-1] == 1199 == tok.eot_token and reference.encode("x<|endoftext|>", allowed_special="all") == eot


@pytest.mark.filterwarnings("ignore:.*no pairs left")
def test_special_tokens_take_the_last_ids_and_are_not_trained_on():
    texts = ["<|endoftext|>hello<|endoftext|> world<|pad|>"] * 20
    tok = Tokenizer.train(iter(texts), 300, pattern="gpt2", special_tokens=["<|endoftext|>", "<|pad|>"], progress=False)
    n = tok.n_vocab
    assert tok.special_tokens == {"<|endoftext|>": n - 2, "<|pad|>": n - 1}
    assert all(b"<|" not in tok.token_bytes(i) and b"|>" not in tok.token_bytes(i) for i in range(n - 2))
    with pytest.raises(ValueError, match="minimum is 258"):
        Tokenizer.train(iter(texts), 257, special_tokens=["<|endoftext|>", "<|pad|>"], progress=False)


@pytest.mark.filterwarnings("ignore:.*no pairs left")
def test_word_cap_drops_the_rarest_and_says_so():
    texts = random_texts(3, 400)
    with pytest.warns(UserWarning, match="rarest distinct words"):
        capped = Tokenizer.train(iter(texts), 400, pattern="gpt2", max_words=48, progress=False)
    counts = word_counts(texts, "gpt2")
    stats = capped.train_stats
    # Past the cap the counter keeps the 7/8 most frequent (ties: smaller bytes stay).
    assert stats.distinct_words == 42 and stats.dropped_words == len(counts) - 42
    kept = dict(sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))[:42])
    tokens, _ = reference_train(kept, 399)
    assert [capped.token_bytes(i) for i in range(len(tokens))] == tokens


@pytest.mark.filterwarnings("ignore:.*no pairs left")
def test_limits_on_bytes_and_lines(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("".join(f"line{i} text\n" for i in range(1000)))
    by_lines = Tokenizer.train(path, 300, max_lines=10, progress=False)
    assert by_lines.train_stats.words == len(_core.split("cl100k", "".join(f"line{i} text\n" for i in range(10))))
    by_bytes = Tokenizer.train(str(path), 300, max_bytes=25, progress=False)
    assert by_bytes.train_stats.words == len(_core.split("cl100k", "line0 text\nline1 text\nlin"))


def test_jsonl_and_compressed_inputs(tmp_path):
    import gzip

    records = [{"body": f"record {i} says hello"} for i in range(50)]
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
    tok = Tokenizer.train(tmp_path, 280, text_field="body", progress=False)
    expected = Tokenizer.train(iter(r["body"] for r in records), 280, progress=False)
    assert tok.train_stats.documents == 50
    assert [tok.token_bytes(i) for i in range(tok.n_vocab - 1)] == [
        expected.token_bytes(i) for i in range(expected.n_vocab - 1)
    ]


def test_a_list_of_texts_is_taken_for_paths_with_a_hint():
    with pytest.raises(FileNotFoundError, match="pass iter"):
        Tokenizer.train(["some text here", "more text"], 300, progress=False)


def fastgpt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastgpt", *args], capture_output=True, text=True)


def test_cli_train_then_encode(tmp_path, stdlib_sample):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("".join(stdlib_sample[:3]))
    (data / "more.txt").write_bytes(b"caf\xe9 au lait\n" * 3)  # Latin-1: invalid UTF-8
    out = tmp_path / "tok"
    run = fastgpt(
        "tokenizer", "train", "--train", str(data), "--vocab_size", "600", "--output_dir", str(out), "--threads", "2"
    )
    assert run.returncode == 0, run.stderr
    assert "fastgpt: warning:" in run.stderr and "3 invalid UTF-8" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["fastgpt.json", "tokenizer.json", "vocab.tiktoken"]
    info = json.loads(fastgpt("tokenizer", "info", str(out)).stdout)
    assert info["n_vocab"] == 600 and info["eot_token"] == 599 and info["pattern"] == "cl100k"
    enc = fastgpt("tokenizer", "encode", "--tokenizer", str(out), "def main():")
    assert fastgpt("tokenizer", "decode", "--tokenizer", str(out), *enc.stdout.split()).stdout == "def main():\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary directory left"


def test_cli_bad_inputs_are_one_clear_line(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "nodocs").mkdir()
    (tmp_path / "nodocs" / "x.bin").write_bytes(b"\0")
    (tmp_path / "ok.txt").write_text("hello world\n")
    cases = {
        str(tmp_path / "missing.txt"): "missing.txt: no such file or directory",
        str(tmp_path / "empty.txt"): "empty.txt: the corpus is empty",
        str(tmp_path / "nodocs"): "nodocs: a directory with no text files",
        str(tmp_path / "*.nope"): "*.nope: the pattern matches no files",
    }
    for path, message in cases.items():
        run = fastgpt(
            "tokenizer", "train", "--train", path, "--vocab_size", "300", "--output_dir", str(tmp_path / "out")
        )
        assert run.returncode == 1 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert not (tmp_path / "out").exists()
    small = fastgpt(
        "tokenizer",
        "train",
        "--train",
        str(tmp_path / "ok.txt"),
        "--vocab_size",
        "100",
        "--output_dir",
        str(tmp_path / "out"),
    )
    assert small.returncode == 1 and "the minimum is 257" in small.stderr
    pattern = fastgpt(
        "tokenizer",
        "train",
        "--train",
        str(tmp_path / "ok.txt"),
        "--vocab_size",
        "300",
        "--pattern",
        "cl100",
        "--output_dir",
        "o",
    )
    assert pattern.returncode == 1 and "unknown pattern name" in pattern.stderr
    size = fastgpt(
        "tokenizer",
        "train",
        "--train",
        str(tmp_path / "ok.txt"),
        "--vocab_size",
        "300",
        "--max_bytes",
        "lots",
        "--output_dir",
        "o",
    )
    assert size.returncode == 2 and "not a number" in size.stderr


def test_progress_is_quiet_off_a_terminal(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Tokenizer.train(iter(random_texts(1, 50)), 270, progress=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
