"""Building and updating an index: walk, compare with what is stored, decode and encode what changed.

One run holds the index's write lock (``lock.py``) from start to end. It plans first, without the model:
files gone from the given paths are dropped, a file whose stamp (size, mtime, ctime, inode) is unchanged is
left alone, one whose stamp changed but whose bytes did not (content hash) is only re-stamped, and a new path
holding the bytes of a file that disappeared is that file renamed: its row, segments and features move with
it. Only when something must be encoded (a new or changed file, or an adapter with no features for a file)
is the model loaded, once. Each file is decoded and encoded as a stream (memory does not grow with its
length) and lands in one transaction (row, segments, every adapter's features), so a run killed at any
moment leaves an index that opens, and a rerun does exactly the remaining work.

Anything wrong with one file (unreadable, empty, corrupt, truncated, a name or content nothing expected)
goes to the ``problems`` table with the reason, and is retried only when the file changes; it never ends
the run. A run that dies while processing a file (killed, out of memory) leaves an ``attempts`` mark; a file
that ``MAX_ATTEMPTS`` runs died on is recorded as a problem instead of being tried forever.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from ..evaluation.tables import ZERO_SHOT
from ..files import atomic_path
from ..video.sampling import exact
from .adapter_files import adapter_path, file_sha256, unused_adapter_files
from .errors import SearchError
from .faiss_index import AnnIndex, default_factory, describe_saved
from .files import find_media
from .lock import index_lock
from .plan import BuildReport, Work, plan, record_problem
from .schema import frame_chunk_for
from .segments import Segment, frames_in, segment_ranges, segment_vectors
from .store import IndexStore

if TYPE_CHECKING:  # torch comes in with the encoder, only once there is something to encode (a rerun that
    # finds nothing new starts in a fraction of the time)
    from .encoder import Encoded
    from .pipeline import PipelineOptions

log = logging.getLogger(__name__)

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
    precision: str = "auto"  # bf16 where the device has it natively, else fp32 (precision.resolve_precision)
    device: str = "cpu"
    decode_workers: int = 1  # decoder threads feeding the encoder
    skip_similar: float = 0.0  # gray levels; a frame this close to the last encoded one reuses its features
    progress: bool = True
    wait: float | None = 0.0  # seconds to wait for another run's lock (None: as long as it takes)


# Runs the works (``context``: rate, settings, options, adapter names and files, ``started``, ``image_size``); yields
# (work, Encoded or the error), any order.
Runner = Callable[[list[Work], dict], Iterator[tuple[Work, "Encoded | Exception"]]]


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
    report = BuildReport()
    with index_lock(out, wait=options.wait):
        store = IndexStore(out, readonly=False, create=True)
        try:
            settings = _settings(store, options, backbone, pretrained)
            model = _Model(settings, options.device, report)
            names = _register_adapters(store, out, model, adapters or {}, zero_shot)
            began = time.perf_counter()
            media, report.skipped_other = find_media(sources)
            works = plan(store, media, names, report)
            report.seconds["plan"] = time.perf_counter() - began - report.seconds["hash"]
            if works:
                _update(store, out, model, works, settings, options, report, on_file, runner)
            _build_ann(store, out, list(store.adapters()), options, report)
            for unused in unused_adapter_files(out, store.adapters()):
                unused.unlink(missing_ok=True)
            counts = store.counts()
            report.files, report.segments, report.frames = counts["files"], counts["segments"], counts["frames"]
            report.problems = {path: reason for path, (_, _, reason) in sorted(store.problems().items())}
        finally:
            store.close()
    return report


class _Model:
    """The backbone, loaded on first use only (a run with nothing to encode never loads it)."""

    def __init__(self, settings: dict, device: str, report: BuildReport):
        self.settings, self.device, self.report = settings, device, report
        self.model = None

    def get(self):
        if self.model is None:
            began = time.perf_counter()
            from .encoder import load_model

            self.model = load_model(self.settings["backbone"], self.settings["pretrained"], {}, self.device)
            self.report.model_loaded = True
            self.report.seconds["load"] += time.perf_counter() - began
        return self.model

    def with_adapters(self, out: Path, adapters: dict[str, str | None]):
        """The backbone with every adapter of the index loaded under its name."""
        model = self.get()
        for name, sha in adapters.items():
            if sha is not None and name not in model.adapters:
                model.load_adapter(adapter_path(out, name, sha), name=name, activate=False)
        return model


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
        from ..precision import resolve_precision  # torch: only for a new index

        settings = {
            "fps": str(exact(fps)),
            "window": window,
            "stride": stride,
            "window_frames": frames_in(window, fps, "--window"),
            "stride_frames": frames_in(stride, fps, "--stride"),
            "backbone": backbone,
            "pretrained": pretrained,
            "precision": resolve_precision(options.precision, options.device),
        }
        with store.transaction():
            store.set_meta("settings", settings)
            store.set_meta("frame_chunk", frame_chunk_for(settings["stride_frames"]))
        return settings
    for key, given in (("fps", options.fps), ("window", options.window), ("stride", options.stride)):
        if given is not None and float(exact(given)) != float(exact(stored[key])):
            raise SearchError(f"{store.root} was built with {key} {stored[key]}; build a new index for {key} {given}")
    for key, given in (("backbone", backbone), ("pretrained", pretrained)):
        if given is not None and given != stored[key]:
            raise SearchError(f"{store.root} was built with {key} {stored[key]!r}, not {given!r}")
    return stored


def _register_adapters(store, out: Path, model: _Model, adapters: dict, zero_shot: bool) -> list[str]:
    """Copy new or changed adapter checkpoints into the index (checked against the backbone first)."""
    known = store.adapters()
    wanted: dict[str, str | None] = {}
    for name, path in adapters.items():
        if not name or name == ZERO_SHOT or not all(c.isalnum() or c in "-_" for c in name):
            raise SearchError(f"adapter name {name!r}: use letters, digits, '-' or '_' (and not {ZERO_SHOT!r})")
        if not Path(path).is_file():
            raise SearchError(f"adapter {name!r}: no such file {path}")
        wanted[name] = file_sha256(path)
    if zero_shot or (not known and not adapters):
        wanted[ZERO_SHOT] = None
    changed = {n: s for n, s in wanted.items() if n not in known or known[n] != s}
    for name, sha in changed.items():
        if sha is not None:  # fail on an adapter that does not fit the backbone before touching the index
            backbone = model.get()
            checked = backbone.load_adapter(adapters[name], name=f"{name}-check", activate=False)
            backbone.remove_adapter(checked)
    for name, sha in changed.items():
        if sha is not None:
            with atomic_path(adapter_path(out, name, sha)) as temporary:
                shutil.copyfile(adapters[name], temporary)
        with store.transaction():
            store.set_adapter(name, sha, None)
            if store.get_meta("default_adapter") is None:
                store.set_meta("default_adapter", name)
        log.info("%s adapter %s", "replaced" if name in known else "added", name)
    return list(store.adapters())


def _update(store, out: Path, model: _Model, works: list[Work], settings, options, report, on_file, runner) -> None:
    from .pipeline import PipelineOptions, encode_works

    rate = exact(settings["fps"])
    adapters = store.adapters()
    marks = _AttemptMarks(out)
    context = {
        "rate": rate,
        "settings": settings,
        "options": options,
        "names": list(adapters),
        "adapter_files": {n: (adapter_path(out, n, sha) if sha else None) for n, sha in adapters.items()},
        "started": marks.note,
        "image_size": lambda: model.get().image_size,  # the backbone's input size (loads it)
    }
    if runner is None:
        loaded = model.with_adapters(out, adapters)

        def runner(works, context):
            pipeline = PipelineOptions(
                batch_size=options.batch_size,
                precision=settings["precision"],
                decode_workers=options.decode_workers,
                skip_similar=options.skip_similar,
            )
            stream = encode_works(loaded, works, rate, pipeline, started=context["started"], decoded=marks.clear)
            for work, outcome in stream:
                if not isinstance(outcome, Exception):
                    outcome = _complete(loaded, work, outcome, rate, list(adapters), pipeline)
                yield work, outcome

    began = time.perf_counter()
    try:
        progress = tqdm(
            runner(works, context), total=len(works), desc="index", unit="file", disable=not options.progress
        )
        for work, outcome in progress:
            if isinstance(outcome, Exception):
                record_problem(store, work.item, outcome)
                continue
            _commit(store, work, outcome, rate, settings, report, on_file)
    finally:
        marks.close()
        report.seconds["pipeline"] += time.perf_counter() - began


class _AttemptMarks:
    """Marks a file while it is being decoded (the part of the work whose memory a file decides), from the
    decoder threads, each through a connection of its own (never inside the committing thread's transaction).
    A run that dies while decoding a file leaves its mark (see ``plan.MAX_ATTEMPTS``); encoding and committing
    hold a batch at a time whatever the file, so a death there is not the file's."""

    def __init__(self, out: Path):
        self.out = out
        self.local = threading.local()
        self.opened: list[IndexStore] = []
        self.lock = threading.Lock()

    def note(self, work: Work) -> None:
        with self._store().transaction():
            self._store().note_attempt(work.item.path, work.stamp.size, work.stamp.mtime_ns)

    def clear(self, work: Work) -> None:
        with self._store().transaction():
            self._store().clear_attempt(work.item.path)

    def _store(self) -> IndexStore:
        store = getattr(self.local, "store", None)
        if store is None:
            store = self.local.store = IndexStore(self.out, readonly=False)
            with self.lock:
                self.opened.append(store)
        return store

    def close(self) -> None:
        with self.lock:
            for store in self.opened:
                store.close()
            self.opened.clear()


def _complete(model, work: Work, encoded: Encoded, rate, all_adapters: list[str], options: PipelineOptions) -> Encoded:
    from .encoder import encode_file

    """The file decodes differently than when it was indexed (another decoder?): its row is replaced, so every
    adapter needs these frames, not only the missing ones."""
    others = [a for a in all_adapters if a not in encoded.features]
    if work.row is None or work.row.frame_count == len(encoded.times) or not others:
        return encoded
    more = encode_file(model, work.item.path, rate, others, batch_size=options.batch_size, precision=options.precision)
    encoded.features.update(more.features)
    encoded.decode_seconds += more.decode_seconds
    encoded.encode_seconds += more.encode_seconds
    return encoded


def _commit(store, work: Work, encoded: Encoded, rate, settings, report: BuildReport, on_file) -> None:
    """One file's row, segments and features in one transaction (the driver's part)."""
    item, row = work.item, work.row
    if row is not None and row.frame_count != len(encoded.times):
        row = None  # decodes differently than before: a new row, every adapter's features with it
    report.seconds["decode"] += encoded.decode_seconds
    report.seconds["encode"] += encoded.encode_seconds
    report.skipped_frames += encoded.skipped
    ranges = [
        (s.first, s.stop)
        for s in segment_ranges(len(encoded.times), settings["window_frames"], settings["stride_frames"])
    ]
    dim = next(iter(encoded.features.values())).shape[1]
    began = time.perf_counter()
    with store.transaction():
        stored_dim = store.get_meta("dim")
        if stored_dim is None:
            store.set_meta("dim", dim)
        elif stored_dim != dim:
            raise SearchError(f"{store.root} holds {stored_dim}-d features, the backbone gives {dim}-d ones")
        if row is None:
            segments = [Segment(a, b) for a, b in ranges]
            file_id = store.put_file(
                item.path, item.kind, work.stamp, work.content, encoded.times, segments, float(rate)
            )  # fmt: skip
        else:
            file_id = row.id
            store.clear_attempt(item.path)
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


def _build_ann(store, out: Path, names: list[str], options: BuildOptions, report: BuildReport) -> None:
    """Save each adapter's FAISS index, unless the saved one was built from this very generation."""
    began = time.perf_counter()
    generation = store.generation
    factory = options.factory or store.get_meta("factory")
    dim = store.get_meta("dim")
    adapters = store.adapters()
    for adapter in names:
        if dim is None:
            break
        described = describe_saved(out / ANN_FOLDER, adapter)
        if (
            described is not None
            and described.get("generation") == generation
            and described.get("adapter_sha") == adapters.get(adapter)
            and (factory is None or described.get("factory") == factory)
        ):
            report.factory = described["factory"]
            continue  # nothing changed since it was saved: not a vector read
        ids, vectors, seq = store.segment_vectors(adapter, dim)
        if not len(ids):
            continue
        chosen = factory or default_factory(len(ids))
        report.factory = chosen
        description = {"generation": generation, "max_seq": seq, "adapter_sha": adapters.get(adapter)}
        AnnIndex.build(vectors, ids, chosen).save(out / ANN_FOLDER, adapter, description)
    if options.factory and options.factory != store.get_meta("factory"):
        with store.transaction():  # kept only once it built; does not change the generation
            store.set_meta("factory", options.factory)
    report.seconds["ann"] += time.perf_counter() - began
