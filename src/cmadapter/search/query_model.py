"""The model side of an open index: the backbone loaded once, adapters by version, query vectors of every kind.

The model holds one active adapter and is not thread-safe, so everything that uses it (loading, switching
adapters, encoding) runs under one lock, one call at a time; concurrent text queries of one adapter version share
a forward (``batching.MicroBatcher``). A head is stateless and is handed out with each vector: stage 2 scores with
it outside the lock. A moment's vector is read from the index, not encoded, and needs only the adapter's head.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import torch

from .adapter_files import adapter_path, file_sha256
from .batching import BatchOptions, MicroBatcher
from .encoder import ZERO_SHOT, load_model, use_adapter
from .errors import SearchError
from .queries import encode_picture, encode_texts
from .schema import SegmentRow


class StaleAdapter(Exception):
    """The snapshot names an adapter file a newer ``index`` run already replaced: search again on a newer one."""


class QueryModel:
    def __init__(self, root: Path, settings: dict, dim: int, device: str, batching: BatchOptions | None, in_flight):
        self.root, self.settings, self.dim, self.device = root, settings, dim, device
        self.lock = threading.Lock()  # the model: loading it, switching adapters, encoding; one at a time
        self._model = None
        self.load_seconds: float | None = None  # the backbone's load, once it happened
        self._heads: dict[tuple, object] = {}  # (adapter, sha256) -> its head
        self.texts = MicroBatcher(self._encode_texts, batching, in_flight=in_flight)

    def model(self, adapter: str, sha256: str | None):
        """The backbone with ``adapter`` active (the version of it with checksum ``sha256``). Adapters load on first
        use; call under ``lock``."""
        model = self.backbone()
        if adapter == ZERO_SHOT:
            if model.active_adapter is not None:
                use_adapter(model, ZERO_SHOT)
            self._heads[adapter, sha256] = model.head
            return model
        loaded = f"{adapter}@{sha256[:16]}"
        if loaded not in model.adapters:
            path = adapter_path(self.root, adapter, sha256)
            if not path.is_file() or file_sha256(path) != sha256:
                raise StaleAdapter(
                    f"{self.root}: the checkpoint of adapter {adapter!r} is missing or was changed since it was "
                    f"indexed ({path}); rerun `cmadapter index` with --adapter {adapter}=PATH"
                )
            model.load_adapter(path, name=loaded, activate=False)
            for older in [n for n in model.adapters if n.startswith(f"{adapter}@") and n != loaded]:
                model.remove_adapter(older)
            for key in [k for k in self._heads if k[0] == adapter and k[1] != sha256]:
                del self._heads[key]
        if model.active_adapter != loaded:  # switching detaches and attaches every block's adapters
            use_adapter(model, loaded)
        self._heads[adapter, sha256] = model.head
        return model

    def ready(self, adapter: str, sha256: str | None) -> None:
        """Load the backbone and the adapter now if they are not yet (not part of any query's time)."""
        with self.lock:
            if (adapter, sha256) not in self._heads:
                self.model(adapter, sha256)

    def backbone(self):
        """The frozen backbone, loaded on first use (call under ``lock``)."""
        if self._model is None:
            began = time.perf_counter()
            model = load_model(self.settings["backbone"], self.settings["pretrained"], {}, self.device)
            if model.backbone.architecture.embed_dim != self.dim:
                raise SearchError(
                    f"{self.root} holds {self.dim}-d features but the backbone "
                    f"({self.settings['pretrained'] or self.settings['backbone']}) gives "
                    f"{model.backbone.architecture.embed_dim}-d ones"
                )
            self._model, self.load_seconds = model, time.perf_counter() - began
        return self._model

    def image_size(self) -> int:
        with self.lock:
            return self.backbone().image_size

    def vector(self, query, adapter: str, sha: str | None, snapshot) -> tuple[torch.Tensor, object]:
        """(the query vector float32 [D], the adapter's head) for a query of any kind (``queries.py``)."""
        if query.kind == "text":
            return self.texts.submit((adapter, sha), query.text)
        if query.kind == "image":
            with self.lock:
                model = self.model(adapter, sha)
                return encode_picture(model, query.pixels, self.settings["precision"]), model.head
        with snapshot.reading() as store:
            probe = SegmentRow(-1, query.video_id, query.frame, query.frame + 1, 0.0, 0.0)
            frames = store.segment_frames([probe], adapter, self.dim)[0]
        if frames is None:
            raise SearchError(f"{query.label}: this index holds no features of that video for adapter {adapter!r}")
        with self.lock:
            head = self._heads.get((adapter, sha))
            head = head if head is not None else self.model(adapter, sha).head
        return torch.from_numpy(frames[0].astype(np.float32)), head

    def _encode_texts(self, group: tuple[str, str | None], texts: list[str]) -> list[tuple[torch.Tensor, object]]:
        """One forward of the text tower for a batch of queries of one adapter version."""
        adapter, sha = group
        with self.lock:
            model = self.model(adapter, sha)
            vectors = encode_texts(model, texts, self.settings["precision"])
            head = model.head
        return [(vector, head) for vector in vectors]
