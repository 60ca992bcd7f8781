"""Runs tiktoken's own public test suite on fastgpt, through `fastgpt.patch_tiktoken()`.

    pip download tiktoken==0.14.0 --no-binary :all: --no-deps -d /tmp/tk && tar xzf /tmp/tk/tiktoken-0.14.0.tar.gz -C /tmp/tk
    python benches/tiktoken_suite.py /tmp/tk/tiktoken-0.14.0/tests [-- extra pytest arguments]

The tests are copied to a temporary folder beside a conftest that patches tiktoken before
they import it, and that reports a test as skipped (not failed) only when fastgpt finds no
rank file for an encoding the test needs (gpt2, r50k_base, p50k_base are not shipped by
bpe-openai; put them in tiktoken's cache to run those tests too). Nothing here is ours to
commit from tiktoken: the suite is read from where you unpacked it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CONFTEST = """
import pytest

import fastgpt
from fastgpt.tokenizer import EncodingNotFoundError

fastgpt.patch_tiktoken()


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    try:
        return (yield)
    except EncodingNotFoundError as exc:
        pytest.skip(f"vocabulary not present locally: {str(exc)[:60]}")


def pytest_sessionfinish(session):
    import tiktoken

    assert isinstance(tiktoken.get_encoding("cl100k_base"), fastgpt.Tokenizer), "tiktoken was not patched"
"""


def main() -> int:
    if len(sys.argv) < 2 or not (Path(sys.argv[1]) / "test_encoding.py").is_file():
        print(__doc__, file=sys.stderr)
        return 2
    extra = sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]
    with tempfile.TemporaryDirectory(prefix="tiktoken-suite-") as tmp:
        # Not run from the unpacked sdist: its tiktoken/ folder (no compiled part) would shadow the installed one.
        shutil.copytree(sys.argv[1], Path(tmp) / "tests")
        (Path(tmp) / "conftest.py").write_text(CONFTEST)
        command = [sys.executable, "-m", "pytest", "tests", "-p", "no:cacheprovider", "-rs", *extra]
        return subprocess.run(command, cwd=tmp).returncode


if __name__ == "__main__":
    sys.exit(main())
