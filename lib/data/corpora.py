"""The corpora the book ships: where they are, and reading them with their checksums verified.

The corpora ship with the repository, xz-compressed, in `data/` (sources and licences in
`data/README.md`). Nothing here touches the network. `$BOOK_DATA` names a folder searched first,
holding the same files plain or compressed (`tinyshakespeare.txt` or `tinyshakespeare.txt.xz`).
Whichever copy is found, its *decompressed* bytes must match the SHA-256 recorded below.
"""

from __future__ import annotations

import hashlib
import lzma
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Corpus:
    """A corpus file the book knows: its path under `data/` (without `.xz`) and its checksum."""

    filename: str
    sha256: str


CORPORA = {
    "tinyshakespeare": Corpus(
        "tinyshakespeare.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    ),
    "tang_poems": Corpus(
        "tang_poems.txt", "40bf2e4fae1db0995bf5cd1c730f2267d76bc51e2689fbdb2843bb7420b2551e"
    ),
    "sst2/train": Corpus(
        "sst2/train.tsv", "920e317b2c52e12cd22db1da2c6708312bd7dc4f3712b9bbf1b50ee6c2c792ba"
    ),
    "sst2/dev": Corpus(
        "sst2/dev.tsv", "92353770071a2a889f75d000a38a9e541ea8f0a5499e50f040b17917a5cbf66f"
    ),
    "sst2/test": Corpus(
        "sst2/test.tsv", "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"
    ),
    "chnsenticorp": Corpus(
        "chnsenticorp/ChnSentiCorp_htl_all.csv",
        "1d414b9c65caf3a836abdb4efded621968502ad3338e1a9d885ae131c86083f0",
    ),
}


def data_dirs() -> list[Path]:
    """Folders searched for corpora, in order: `$BOOK_DATA` (when set), then the shipped `data/`."""
    dirs = [Path(os.environ["BOOK_DATA"])] if os.environ.get("BOOK_DATA") else []
    return dirs + [ROOT / "data"]


def find_corpus(name: str) -> Path:
    """The first file holding corpus `name`: plain or `.xz`, in the folders of `data_dirs()`."""
    if name not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; the corpora are: {', '.join(sorted(CORPORA))}")
    filename = CORPORA[name].filename
    for folder in data_dirs():
        for path in (folder / filename, folder / f"{filename}.xz"):
            if path.is_file():
                return path
    searched = ", ".join(str(d) for d in data_dirs())
    raise FileNotFoundError(
        f"corpus {name!r} ({filename} or {filename}.xz) is in none of {searched}; the repository "
        "ships it in data/, so restore that folder (git checkout data) or point BOOK_DATA at a copy"
    )


def load_bytes(name: str) -> bytes:
    """The bytes of corpus `name`, decompressed and checked against its SHA-256."""
    path = find_corpus(name)
    raw = path.read_bytes()
    if path.suffix == ".xz":
        try:
            raw = lzma.decompress(raw)
        except lzma.LZMAError as exc:
            raise ValueError(f"{path} is not a valid xz file ({exc}); restore it from git") from exc
    digest = hashlib.sha256(raw).hexdigest()
    expected = CORPORA[name].sha256
    if digest != expected:
        raise ValueError(
            f"{path} holds content with sha256 {digest}, expected {expected}: the file is corrupt "
            "or a different version; restore it from git (git checkout data) or fix BOOK_DATA"
        )
    return raw


def load_text(name: str) -> str:
    """The full text of corpus `name` (one of `CORPORA`), checksum verified."""
    return load_bytes(name).decode("utf-8")
