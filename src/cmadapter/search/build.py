"""Building and updating an index: walk, compare with what is stored, decode and encode what changed.

A file is (re)encoded when it is new, when its size or mtime changed *and* its content hash did too, or
when an adapter has no features for it yet; a file whose size or mtime changed but whose bytes did not is
only re-stamped. Files gone from the given paths are dropped. Each file lands in one transaction (row,
segments, every adapter's features), so a run killed at any moment leaves an index that opens, and a rerun
does exactly the remaining work. Files that cannot be read go to the ``problems`` table with the reason,
and are retried only when they change.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import CmadapterError
from ..files import atomic_path
from ..video.sampling import exact
from .encoder import ZERO_SHOT, decode_item, encode_frames, load_model, segment_vectors, use_adapter
from .errors import SearchError
from .faiss_index import AnnIndex, default_factory
from .files import Identity, MediaFile, content_hash, find_media, identity
from .segments import Segment, frames_in, segment_ranges
from .store import FileRow, IndexStore

log = logging.getLogger(__name__)

ADAPTER_FOLDER = "adapters"
ANN_FOLDER = "ann"


@dataclass
class BuildOptions:
    """Sampling and segment settings are fixed when an index is created (None: keep the stored ones)."""

    fps: float | None = None  # default 1
    window: float | None = None  # seconds; default max_frames / fps (12 s at 1 fps)
    stride: float | None = None  # seconds; default window / 2
    max_frames: int = 12  # the model's frame count, for the default window
    factory: str | None = None  # FAISS factory string; default by collection size
    batch_size: int = 64  # frames per encoder batch
    precision: str = "fp32"
    device: str = "cpu"
    progress: bool = True


@dataclass
class BuildReport:
    files: int = 0
    segments: int = 0
    frames: int = 0
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    restamped: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # path -> reason (this run's and earlier ones)
    skipped_other: int = 0
    encoded: dict[str, dict[str, int]] = field(default_factory=dict)  # adapter -> {"files", "frames"}
    seconds: dict[str, float] = field(
        default_factory=lambda: {"hash": 0.0, "decode": 0.0, "encode": 0.0, "write": 0.0, "ann": 0.0}
    )
    factory: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def build_index(
    sources: list[str | Path],
    out: str | Path,
    *,
    backbone: str | None = None,
    pretrained: str | None = None,
    adapters: dict[str, str | Path] | None = None,
    zero_shot: bool = False,
    options: BuildOptions | None = None,
    on_file: Callable[[str], None] | None = None,
    runner: Runner | None = None,
) -> BuildReport:
    """Create or update the index at ``out`` from the media under ``sources`` (see the module doc).

    ``adapters``: name -> adapter checkpoint, added to those the index has; ``zero_shot`` adds the plain
    backbone (the default for a new index without adapters). ``on_file(path)`` runs inside each file's
    transaction, before it commits (tests use it to die mid-run). ``runner`` decodes and encodes the planned
    files elsewhere (``cluster.index``: Ray); by default this process does, one file after another."""
    options = options or BuildOptions()
    out = Path(out)
    store = IndexStore(out, readonly=False, create=True)
    report = BuildReport()
    try:
        settings = _settings(store, options, backbone, pretrained)
        names = _register_adapters(store, out, settings, adapters or {}, zero_shot, options.device)
        adapter_files = {n: (out / ADAPTER_FOLDER / f"{n}.safetensors" if n != ZERO_SHOT else None) for n in names}
        model = load_model(settings["backbone"], settings["pretrained"], adapter_files, options.device)
        _check_dim(store, model)
        media, report.skipped_other = find_media(sources)
        _update(store, model, media, names, settings, options, report, on_file, runner)
        _build_ann(store, out, names, settings, options, report)
        counts = store.counts()
        report.files, report.segments, report.frames = counts["files"], counts["segments"], counts["frames"]
        report.problems = {path: reason for path, (_, _, reason) in sorted(store.problems().items())}
    finally:
        store.close()
    return report


def _settings(store: IndexStore, options: BuildOptions, backbone, pretrained) -> dict:
    stored = store.get_meta("settings")
    if pretrained is not None and Path(pretrained).exists():
        pretrained = str(Path(pretrained).absolute())
    if stored is None:
        fps = options.fps or 1.0
        window = options.window or options.max_frames / fps
        stride = options.stride or window / 2
        if backbone is None and pretrained is None:
            raise SearchError("a new index needs a backbone: --pretrained WEIGHTS or --backbone NAME")
        settings = {
            "fps": str(exact(fps)),
            "window": window,
            "stride": stride,
            "window_frames": frames_in(window, fps, "--window"),
            "stride_frames": frames_in(stride, fps, "--stride"),
            "backbone": backbone,
            "pretrained": pretrained,
            "precision": options.precision,
        }
        with store.transaction():
            store.set_meta("settings", settings)
        return settings
    for key, given in (("fps", options.fps), ("window", options.window), ("stride", options.stride)):
        if given is not None and float(exact(given)) != float(exact(stored[key])):
            raise SearchError(f"{store.root} was built with {key} {stored[key]}; build a new index for {key} {given}")
    for key, given in (("backbone", backbone), ("pretrained", pretrained)):
        if given is not None and given != stored[key]:
            raise SearchError(f"{store.root} was built with {key} {stored[key]!r}, not {given!r}")
    return stored


def _check_dim(store: IndexStore, model) -> None:
    dim = model.backbone.architecture.embed_dim
    stored = store.get_meta("dim")
    if stored is None:
        with store.transaction():
            store.set_meta("dim", dim)
    elif stored != dim:
        raise SearchError(f"{store.root} holds {stored}-d features, the backbone gives {dim}-d ones")


def _register_adapters(store, out: Path, settings, adapters: dict, zero_shot: bool, device: str) -> list[str]:
    """Copy new or changed adapter checkpoints into the index (checked against the backbone first)."""
    known = store.adapters()
    wanted: dict[str, str | None] = {}
    for name, path in adapters.items():
        if not name or name == ZERO_SHOT or "/" in name or "." in name:
            raise SearchError(f"adapter name {name!r}: use letters, digits, '-' or '_' (and not {ZERO_SHOT!r})")
        if not Path(path).is_file():
            raise SearchError(f"adapter {name!r}: no such file {path}")
        wanted[name] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if zero_shot or (not known and not adapters):
        wanted[ZERO_SHOT] = None
    changed = {n: s for n, s in wanted.items() if n not in known or known[n] != s}
    if any(sha is not None for sha in changed.values()):
        # Fail on an adapter that does not fit the backbone before touching the index.
        load_model(
            settings["backbone"], settings["pretrained"], {n: adapters[n] for n, sha in changed.items() if sha}, device
        )
    for name, sha in changed.items():
        if sha is not None:
            with atomic_path(out / ADAPTER_FOLDER / f"{name}.safetensors") as temporary:
                shutil.copyfile(adapters[name], temporary)
        with store.transaction():
            store.set_adapter(name, sha, None)
            if store.get_meta("default_adapter") is None:
                store.set_meta("default_adapter", name)
        log.info("%s adapter %s", "replaced" if name in known else "added", name)
    return list(store.adapters())


@dataclass
class Work:
    """A file to (re)encode, as the driver planned it: the unit a worker (this process, or a Ray task) runs."""

    item: MediaFile
    ident: Identity
    content: str
    row: FileRow | None
    missing: list[str]  # adapters to encode
    is_new: bool


@dataclass
class Encoded:
    """What a worker returns for one ``Work``: frame times and each encoded adapter's fp16 frame features."""

    times: np.ndarray
    features: dict[str, np.ndarray]
    decode_seconds: float
    encode_seconds: float


# Runs ``encode_work`` (or its equivalent) over the works; yields (work, Encoded or the error), any order.
Runner = Callable[[list[Work], dict], Iterator[tuple[Work, "Encoded | Exception"]]]


def encode_work(model, work: Work, rate, image_size: int, all_adapters: list[str], batch_size: int, precision: str):
    """Decode one file and encode it with every adapter it misses: the per-file step of every runner."""
    began = time.perf_counter()
    decoded = decode_item(work.item.path, work.item.kind, rate, image_size)
    decode_seconds = time.perf_counter() - began
    missing = work.missing
    if work.row is not None and work.row.frame_count != len(decoded.times):
        missing = all_adapters  # decodes differently than before: every adapter again
    began = time.perf_counter()
    features = {}
    for adapter in missing:
        use_adapter(model, adapter)
        features[adapter] = encode_frames(model, decoded.frames, batch_size=batch_size, precision=precision)
    return Encoded(decoded.times, features, decode_seconds, time.perf_counter() - began)


def _update(
    store, model, media: list[MediaFile], names, settings, options, report: BuildReport, on_file, runner
) -> None:
    works = _plan(store, media, names, report)
    rate = exact(settings["fps"])
    names_now = list(store.adapters())
    context = {
        "rate": rate,
        "settings": settings,
        "options": options,
        "names": names_now,
        "image_size": model.image_size,
    }
    if runner is None:

        def runner(works, context):
            for work in works:
                try:
                    yield (
                        work,
                        encode_work(
                            model,
                            work,
                            rate,
                            model.image_size,
                            context["names"],
                            options.batch_size,
                            settings["precision"],
                        ),
                    )
                except (CmadapterError, OSError) as exc:
                    yield work, exc

    for work, outcome in tqdm(
        runner(works, context), total=len(works), desc="index", unit="file", disable=not options.progress
    ):
        if isinstance(outcome, Exception):
            _problem(store, work.item, outcome)
            continue
        _commit(store, work, outcome, rate, settings, report, on_file)


def _plan(store, media: list[MediaFile], names, report: BuildReport) -> list[Work]:
    """Drop deleted files, re-stamp touched ones, and list what must be encoded (the driver's part)."""
    stored = store.files()
    problems = store.problems()
    done = store.encoded_adapters()
    present = {m.path for m in media}
    gone = [p for p in stored if p not in present]
    with store.transaction():
        store.delete_files(gone)
        store.delete_problems([p for p in problems if p not in present])
    report.deleted = gone
    for adapter in names:
        report.encoded[adapter] = {"files": 0, "frames": 0}
    works = []
    for item in media:
        try:
            began = time.perf_counter()
            ident = identity(item)
            row = stored.get(item.path)
            if row is None and item.path in problems and problems[item.path][:2] == (ident.size, ident.mtime_ns):
                continue  # unreadable before, unchanged since
            content = None
            if row is not None and (row.size, row.mtime_ns) != (ident.size, ident.mtime_ns):
                content = content_hash(item)
                if content == row.hash:
                    with store.transaction():
                        store.touch_file(row.id, ident.size, ident.mtime_ns)
                    report.restamped.append(item.path)
                else:
                    row = None
                    report.changed.append(item.path)
            missing = [a for a in names if row is None or a not in done.get(row.id, set())]
            if not missing:
                report.unchanged += row is not None and item.path not in report.restamped
                continue
            is_new = row is None and item.path not in report.changed
            content = content or content_hash(item)
            report.seconds["hash"] += time.perf_counter() - began
            works.append(Work(item, ident, content, row, missing, is_new))
        except (CmadapterError, OSError) as exc:
            _problem(store, item, exc)
    return works


def _problem(store, item: MediaFile, exc: Exception) -> None:
    reason = str(exc)
    reason = reason[len(item.path) :].lstrip(": ") if reason.startswith(item.path) else reason
    log.warning("cannot index %s: %s", item.path, reason)
    size, mtime = _stat_or_none(item.path)
    with store.transaction():
        store.put_problem(item.path, size, mtime, reason)


def _commit(store, work: Work, encoded: Encoded, rate, settings, report: BuildReport, on_file) -> None:
    """One file's row, segments and features in one transaction (the driver's part)."""
    item, row = work.item, work.row
    if row is not None and row.frame_count != len(encoded.times):
        row = None  # decodes differently than before: a new row, every adapter's features with it
    report.seconds["decode"] += encoded.decode_seconds
    report.seconds["encode"] += encoded.encode_seconds
    ranges = [
        (s.first, s.stop)
        for s in segment_ranges(len(encoded.times), settings["window_frames"], settings["stride_frames"])
    ]
    began = time.perf_counter()
    with store.transaction():
        if row is None:
            segments = [Segment(a, b) for a, b in ranges]
            file_id = store.put_file(
                item.path, item.kind, work.ident.size, work.ident.mtime_ns, work.content, encoded.times, segments,
                float(rate),
            )  # fmt: skip
        else:
            file_id = row.id
        for adapter, frames in encoded.features.items():
            store.put_features(file_id, adapter, frames, segment_vectors(frames, ranges))
            report.encoded.setdefault(adapter, {"files": 0, "frames": 0})
            report.encoded[adapter]["files"] += 1
            report.encoded[adapter]["frames"] += len(frames)
        if on_file is not None:
            on_file(item.path)
    report.seconds["write"] += time.perf_counter() - began
    if work.is_new:
        report.new.append(item.path)


def _build_ann(store, out: Path, names, settings, options: BuildOptions, report: BuildReport) -> None:
    began = time.perf_counter()
    generation = store.generation
    factory = options.factory or store.get_meta("factory")
    dim = store.get_meta("dim")
    for adapter in names:
        if dim is None:
            break
        ids, vectors = store.segment_vectors(adapter, dim)
        chosen = factory or default_factory(len(ids))
        report.factory = chosen
        if len(ids) and AnnIndex.load(out / ANN_FOLDER, adapter, generation, chosen) is None:
            AnnIndex.build(vectors, ids, chosen).save(out / ANN_FOLDER, adapter, generation)
    if options.factory and options.factory != store.get_meta("factory"):
        with store.transaction():  # kept only once it built; does not change the generation
            store.set_meta("factory", options.factory)
    report.seconds["ann"] += time.perf_counter() - began


def _stat_or_none(path: str) -> tuple[int | None, int | None]:
    try:
        stat = Path(path).stat()
        return stat.st_size, stat.st_mtime_ns
    except OSError:
        return None, None
