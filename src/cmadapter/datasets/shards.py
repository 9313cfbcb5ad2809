"""WebDataset shards of captioned videos, as video2dataset and open_clip write them.

A shard is a tar file; a sample is the run of consecutive members sharing a key (the name up to its first
dot): ``{key}.mp4`` (or another video or image extension) and ``{key}.txt`` (the caption), or ``{key}.json``
with a ``caption`` field (video2dataset writes both). Shards are named by:

- a brace pattern, ``shards/{00000..00099}.tar`` (several patterns joined by ``::``);
- a folder: its ``*.tar`` (``*.tar.gz``, ``*.tgz``) files, sorted;
- a list file (``.txt``): one shard path per line, relative to the file's folder (``#`` comments);
- ``pipe:COMMAND`` (``pipe:curl -s https://host/shard-{0000..0099}.tar``): the command's output is read as the
  shard. A pipe runs a shell command, so it is accepted in the pattern you give, never from a list file.

``scan_shard`` lists a shard once before training: each sample's key, video member and caption (a local,
uncompressed shard is read header by header, seeking over the videos), and every problem, named by shard
and key: a truncated shard, a sample without a video or caption, an empty caption, a repeated key. The
``missing`` rule of videos applies to them (fail, or drop and say so). ``iter_shard_members`` streams a
shard's videos with the ``webdataset`` library (no extraction to disk); ``ShardMember`` reads one video
member back (by offset in a local shard; by streaming the shard again otherwise).
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..video.decode import VIDEO_EXTENSIONS
from ..video.image import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
MAX_CAPTION_BYTES = 1 << 20  # a .txt or .json member larger than this is not a caption
MEDIA_EXTENSIONS = tuple(e.lstrip(".") for e in (*VIDEO_EXTENSIONS, *IMAGE_EXTENSIONS))  # preference order


@dataclass(frozen=True)
class ShardSample:
    key: str
    member: str  # the video's (or image's) member name, e.g. "000012.mp4"
    caption: str
    offset: int | None = None  # where the member's bytes start in a local uncompressed shard
    size: int = 0

    @property
    def extension(self) -> str:
        return self.member[len(self.key) + 1 :].lower()


@dataclass(frozen=True)
class ShardProblem:
    url: str
    key: str | None  # None: the shard as a whole (cannot be opened)
    reason: str

    def __str__(self) -> str:
        return f"shard {self.url}" + (f" key {self.key!r}" if self.key is not None else "") + f": {self.reason}"


@dataclass
class Shard:
    url: str
    samples: list[ShardSample] = field(default_factory=list)  # the good ones, in the shard's order
    problems: list[ShardProblem] = field(default_factory=list)

    @property
    def seekable(self) -> bool:
        return bool(self.samples) and self.samples[0].offset is not None


# ---- naming shards ------------------------------------------------------------------------------------------


def is_pipe(url: str) -> bool:
    return url.startswith("pipe:")


def local_path(url: str) -> Path | None:
    """The file a local shard url names (plain path or ``file:``), None for pipes and remote urls."""
    if is_pipe(url):
        return None
    if url.startswith("file:"):
        return Path(url[len("file:") :].removeprefix("//"))
    return None if "://" in url else Path(url)


def shard_urls(spec: str) -> list[str]:
    """The shards ``spec`` names (see the module's docstring), in order."""
    from webdataset.shardlists import expand_urls

    if not isinstance(spec, str) or not spec.strip():
        raise DataError("no shards given: name them with a brace pattern, a folder or a list file")
    spec = spec.strip()
    path = local_path(spec)
    if path is not None and path.is_dir():
        urls = sorted(str(p) for p in path.iterdir() if p.is_file() and p.name.endswith(SHARD_SUFFIXES))
        if not urls:
            raise DataError(f"{path}: a folder without shards ({', '.join('*' + s for s in SHARD_SUFFIXES)})")
        return urls
    if path is not None and path.is_file() and not path.name.endswith(SHARD_SUFFIXES):
        return _list_file(path)
    urls = expand_urls(spec)
    if not urls:
        raise DataError(f"{spec!r} names no shards")
    return urls


def _list_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the shard list: {exc}") from None
    urls = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if is_pipe(line) or "://" in line:
            raise DataError(
                f"{path} line {number}: a list file names local shard files only; a pipe: command runs "
                "code, so give it as the shards pattern itself"
            )
        shard = Path(line)
        urls.append(str(shard if shard.is_absolute() else path.parent / shard))
    if not urls:
        raise DataError(f"{path}: the shard list names no shards")
    return urls


# ---- scanning -------------------------------------------------------------------------------------------------


def split_name(name: str) -> tuple[str | None, str]:
    """(key, extension) of a member name, as webdataset groups them: the key ends at the first dot of the
    file name (a folder in the member name is part of the key)."""
    from webdataset.tariterators import base_plus_ext

    key, ext = base_plus_ext(name)
    return key, (ext or "").lower()


class _SampleBuilder:
    """Groups consecutive members by key into samples and checks each sample as it closes."""

    def __init__(self, url: str):
        self.shard = Shard(url)
        self.seen: set[str] = set()
        self.key: str | None = None
        self.members: dict[str, tuple[str, int | None, int]] = {}  # ext -> (name, offset, size)
        self.texts: dict[str, bytes] = {}
        self.broken: str | None = None  # why the open sample is bad, found while adding its members

    def add(self, name: str, offset: int | None, size: int, read_text) -> None:
        key, ext = split_name(name)
        if key is None or key.split("/")[-1].startswith("__"):
            return  # not a sample member (webdataset's rule), or metadata such as __index__
        if key != self.key:
            self.close()
            self.key = key
        if ext in self.members:
            self.broken = self.broken or f"two members {name!r} (a repeated key?)"
            return
        self.members[ext] = (name, offset, size)
        if ext in ("txt", "json"):
            if size > MAX_CAPTION_BYTES:  # never read a huge member into memory to find a caption
                self.broken = self.broken or f"{name} holds {size:,} bytes, more than a caption's {MAX_CAPTION_BYTES:,}"
                return
            self.texts[ext] = read_text()

    def problem(self, key: str | None, reason: str) -> None:
        self.shard.problems.append(ShardProblem(self.shard.url, key, reason))

    def close(self) -> None:
        key, members, texts, broken = self.key, self.members, self.texts, self.broken
        self.key, self.members, self.texts, self.broken = None, {}, {}, None
        if key is None:
            return
        if key in self.seen:
            self.problem(key, "the key repeats an earlier sample of the shard")
            return
        self.seen.add(key)
        media = next((ext for ext in MEDIA_EXTENSIONS if ext in members), None)
        caption, reason = _caption(texts)
        if broken is None and media is None:
            broken = f"no video or image member (members: {', '.join(sorted(members)) or 'none'})"
        if broken is None and members[media][2] == 0:
            broken = f"{members[media][0]} is empty"
        if broken or reason:
            self.problem(key, broken or reason)
            return
        name, offset, size = members[media]
        self.shard.samples.append(ShardSample(key, name, caption, offset, size))

    def truncated(self, reason: str, member: str | None = None) -> None:
        """The shard ends early. When the cut falls in ``member`` of another sample, the open sample is whole;
        otherwise the open sample (or, between samples, the last one) may lack members: it goes too."""
        key = split_name(member)[0] if member else None
        if key is not None and key != self.key:
            self.close()
        elif key is None and self.key is None and self.shard.samples:
            key = self.shard.samples.pop().key
        key = key or self.key
        self.key, self.members, self.texts, self.broken = None, {}, {}, None
        self.problem(key, f"truncated shard ({reason})")


def _caption(texts: dict[str, bytes]) -> tuple[str, str | None]:
    """(caption, None), or ("", why there is none)."""
    if "txt" in texts:
        try:
            text = texts["txt"].decode("utf-8-sig").strip()
        except UnicodeDecodeError:
            return "", "the .txt caption is not UTF-8 text"
        return (text, None) if text else ("", "empty caption (.txt)")
    if "json" in texts:
        try:
            meta = json.loads(texts["json"].decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return "", f"the .json member is not UTF-8 JSON ({exc})"
        caption = meta.get("caption") if isinstance(meta, dict) else None
        if not isinstance(caption, str):
            return "", f"no caption: no .txt member, and the .json has no 'caption' string (got {caption!r})"
        return (caption.strip(), None) if caption.strip() else ("", "empty caption (.json 'caption')")
    return "", "no caption: neither a .txt member nor a .json with a 'caption' field"


def scan_shard(url: str) -> Shard:
    """The samples of one shard, and its problems (``Shard.problems``); never raises for bad data."""
    builder = _SampleBuilder(url)
    path = local_path(url)
    try:
        if path is not None and not path.is_file():
            builder.problem(None, "no such file" if not path.exists() else "not a file")
            return builder.shard
        if path is not None and _is_plain_tar(path):
            _scan_local(path, builder)
        else:
            _scan_stream(url, builder)
    except (tarfile.TarError, EOFError) as exc:
        builder.truncated(str(exc) or type(exc).__name__)
    except OSError as exc:
        builder.problem(None, f"cannot read: {exc}")
    builder.close()
    return builder.shard


def _is_plain_tar(path: Path) -> bool:
    """An uncompressed tar (its members can be read back by offset)."""
    try:
        with path.open("rb") as f:
            head = f.read(tarfile.BLOCKSIZE)
    except OSError:
        return False
    return len(head) == tarfile.BLOCKSIZE and head[257:262] == b"ustar"


def _scan_local(path: Path, builder: _SampleBuilder) -> None:
    size = path.stat().st_size
    with tarfile.open(path, mode="r:") as archive:
        while True:
            member = archive.next()
            if member is None:
                break
            if not member.isreg():
                continue
            if member.offset_data + member.size > size:
                builder.truncated(f"{member.name} ends after the file's last byte", member.name)
                return
            builder.add(
                member.name,
                member.offset_data,
                member.size,
                lambda m=member: archive.extractfile(m).read(),
            )
            archive.members = []  # headers seen are not needed again; keeps memory flat on big shards
        if archive.offset + 2 * tarfile.BLOCKSIZE > size:
            raise tarfile.ReadError("the file ends without tar's end-of-archive blocks")


def _scan_stream(url: str, builder: _SampleBuilder) -> None:
    for name, data in _stream_members(url):
        builder.add(name, None, len(data), lambda d=data: d)


def _stream_members(url: str) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every regular member, streamed through webdataset's opener and tar reader."""
    from webdataset.gopen import gopen
    from webdataset.tariterators import tar_file_iterator

    def reraise(exc: Exception) -> bool:
        raise exc

    stream = gopen(url, "rb")
    try:
        for member in tar_file_iterator(stream, skip_meta=None, handler=reraise):
            yield member["fname"], member["data"]
    finally:
        stream.close()


def iter_shard_members(url: str, wanted: dict[str, str]) -> Iterator[tuple[str, bytes]]:
    """(key, bytes) of the wanted members (key -> member name, as scanned) of a shard, streamed in the
    shard's order; stops reading once every one has come. A shard that no longer holds them is an error."""
    remaining = dict(wanted)
    if not remaining:
        return
    try:
        for name, data in _stream_members(url):
            key, _ext = split_name(name)
            if key is not None and remaining.get(key) == name:
                del remaining[key]
                yield key, data
                if not remaining:
                    return
    except (tarfile.TarError, EOFError, OSError) as exc:
        key = next(iter(remaining))
        raise DataError(f"shard {url} key {key!r}: cannot read the shard: {exc}") from None
    key = next(iter(remaining))
    raise DataError(f"shard {url} key {key!r}: not in the shard any more (it changed since it was scanned)")


def read_member(url: str, sample: ShardSample) -> bytes:
    """The bytes of ``sample``'s video member: by offset in a local shard, else by streaming the shard."""
    path = local_path(url)
    if sample.offset is None or path is None:
        return next(data for _key, data in iter_shard_members(url, {sample.key: sample.member}))
    try:
        with path.open("rb") as f:
            f.seek(sample.offset)
            data = f.read(sample.size)
    except OSError as exc:
        raise DataError(f"shard {url} key {sample.key!r}: cannot read: {exc}") from None
    if len(data) != sample.size:
        raise DataError(f"shard {url} key {sample.key!r}: the shard changed since it was scanned")
    return data


def scan_shards(urls: list[str], *, workers: int = 0) -> list[Shard]:
    """``scan_shard`` of each url, in order (``workers`` threads: shards are read in parallel)."""
    if workers <= 1 or len(urls) <= 1:
        return [scan_shard(url) for url in urls]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(scan_shard, urls))


def default_scan_workers() -> int:
    return min(8, os.cpu_count() or 1)
