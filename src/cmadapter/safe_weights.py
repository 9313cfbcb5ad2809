"""Tensors out of PyTorch's pickle-based files, without running any code a file holds.

No file given to cmadapter runs code. Two formats need care:

- **TorchScript archives** (OpenAI distributes CLIP as one). ``torch.jit.load`` compiles the archive's
  ``code/`` and runs it: a class's ``__setstate__`` executes while the archive loads, and can write files.
  We never call it. :func:`read_torchscript_weights` opens the archive as the zip it is and reads
  ``data.pkl`` with a restricted unpickler that knows only tensor rebuilding (``_rebuild_tensor_v2`` and
  the storage types, whose bytes come from the archive's ``data/`` records) and plain containers. Every
  class of the archive's own (``__torch__.*``) becomes an inert :class:`ScriptObject` holding its state as
  data; any other global is refused. Which attributes are parameters and buffers is read, as text, from
  the ``__parameters__``/``__buffers__`` lists of the class definitions under ``code/`` (never compiled),
  so the result is the state dict ``torch.jit.load(path).state_dict()`` would give, key for key and bit
  for bit. A class that defines ``__setstate__`` keeps its state in a form only its code can read: such an
  archive is refused, and nothing in it runs.
- **``torch.save`` files** go through ``torch.load(weights_only=True)``, torch's own restricted
  unpickler; its refusal becomes one line of ours instead of torch's advice to disable the check.
"""

from __future__ import annotations

import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

# Storage classes a TorchScript pickle names, by their legacy names.
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}
# TorchScript wraps typed lists and dicts in these; each returns its (plain) argument.
_TYPED_LIST_BUILDERS = ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "build_strlist")
_CLASS_LINE = re.compile(r"^class\s+(\w+)\s*\(\s*([\w.]*)\s*\)\s*:", re.MULTILINE)
_NAME_LIST = re.compile(r"^\s+(__parameters__|__buffers__)\s*=\s*\[([^\]]*)\]", re.MULTILINE)
_SETSTATE = re.compile(r"^\s+def\s+__setstate__\s*\(", re.MULTILINE)


@dataclass
class ScriptObject:
    """An object of a class the archive defines, kept as data: its qualified name and pickled state."""

    qualified_name: str
    state: Any = None
    args: tuple = ()


@dataclass
class _ClassInfo:
    is_module: bool
    parameters: list[str] = field(default_factory=list)
    buffers: list[str] = field(default_factory=list)
    has_setstate: bool = False


@dataclass
class _StorageType:
    name: str
    dtype: torch.dtype


def is_torchscript_archive(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (by content, whatever its name)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())


def read_torchscript_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a TorchScript module archive (parameters and buffers, CPU), no code run."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return _Reader(path, archive).state_dict()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is a TorchScript archive that could not be read: {_one_line(exc)}") from exc


def torch_load_weights(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with a one-line error; never falls back to the full unpickler."""
    path = Path(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path} holds Python objects other than tensors and plain containers{what}; cmadapter does not "
            "load them, since unpickling them could run code. Save a plain state dict (torch.save(model."
            "state_dict(), ...)) or a safetensors file"
        ) from exc
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"{path} is not a PyTorch checkpoint this loader can read: {_one_line(exc)}") from exc


class _Reader:
    def __init__(self, path: Path, archive: zipfile.ZipFile):
        self.path, self.archive = path, archive
        names = archive.namelist()
        roots = sorted({n[: -len("/data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1})
        if len(roots) != 1:
            raise CheckpointError(f"{path} is a zip archive without exactly one '<name>/data.pkl' record")
        self.root = roots[0]
        byteorder = f"{self.root}/byteorder"
        if byteorder in names and archive.read(byteorder).decode().strip() != sys.byteorder:
            raise CheckpointError(f"{path} was written on a {archive.read(byteorder).decode().strip()}-endian machine")
        self.classes = self._read_class_definitions(names)
        self.storages: dict[str, torch.Tensor] = {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        root = _RestrictedUnpickler(self, self.archive.read(f"{self.root}/data.pkl")).load()
        if not isinstance(root, ScriptObject):
            raise CheckpointError(f"{self.path}: data.pkl does not hold a TorchScript module")
        out: dict[str, torch.Tensor] = {}
        self._collect(root, "", out)
        return out

    def _collect(self, obj: ScriptObject, prefix: str, out: dict[str, torch.Tensor]) -> None:
        info = self._class(obj.qualified_name)
        if info.has_setstate:
            raise CheckpointError(
                f"{self.path}: class {obj.qualified_name} defines __setstate__, code that torch.jit.load would "
                "run to restore its state; cmadapter runs no code from weight files"
            )
        if not isinstance(obj.state, dict):
            raise CheckpointError(f"{self.path}: module {obj.qualified_name} has no attribute dictionary")
        # The order of nn.Module.state_dict: own parameters, own buffers, then each submodule.
        for names in (info.parameters, info.buffers):
            for name, value in obj.state.items():
                if name in names and value is not None:
                    if not isinstance(value, torch.Tensor):
                        raise CheckpointError(f"{self.path}: {prefix}{name} is not a tensor")
                    out[prefix + name] = value
        for name, value in obj.state.items():
            if isinstance(value, ScriptObject) and self._class(value.qualified_name).is_module:
                self._collect(value, f"{prefix}{name}.", out)

    def _class(self, qualified_name: str) -> _ClassInfo:
        if qualified_name not in self.classes:
            raise CheckpointError(f"{self.path}: no definition of class {qualified_name} under code/")
        return self.classes[qualified_name]

    def _read_class_definitions(self, names: list[str]) -> dict[str, _ClassInfo]:
        """Class name -> its parameters and buffers, read as text from ``code/`` (which is never compiled)."""
        code = f"{self.root}/code/"
        classes = {}
        for name in names:
            if not (name.startswith(code) and name.endswith(".py")):
                continue
            module = name[len(code) : -len(".py")].replace("/", ".")
            text = self.archive.read(name).decode("utf-8", errors="replace")
            heads = list(_CLASS_LINE.finditer(text))
            for head, following in zip(heads, [*heads[1:], None]):
                body = text[head.end() : following.start() if following else len(text)]
                info = _ClassInfo(is_module=head.group(2) == "Module", has_setstate=bool(_SETSTATE.search(body)))
                for kind, listed in _NAME_LIST.findall(body):
                    names_listed = re.findall(r'"([^"]*)"', listed)
                    (info.parameters if kind == "__parameters__" else info.buffers).extend(names_listed)
                classes[f"{module}.{head.group(1)}"] = info
        return classes

    def storage(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self.path}: unexpected persistent id in data.pkl: {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise CheckpointError(f"{self.path}: malformed storage reference {pid!r:.80}")
        if key not in self.storages:
            record = f"{self.root}/data/{key}"
            try:
                data = self.archive.read(record)
            except KeyError:
                raise CheckpointError(f"{self.path} lacks the tensor data record {record}") from None
            itemsize = torch.empty((), dtype=storage_type.dtype).element_size()
            if len(data) != numel * itemsize:
                raise CheckpointError(
                    f"{self.path}: record {record} holds {len(data)} bytes, expected {numel * itemsize} (truncated?)"
                )
            flat = torch.frombuffer(bytearray(data), dtype=storage_type.dtype) if data else torch.empty(0)
            self.storages[key] = flat.to(storage_type.dtype)
        return self.storages[key]


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """``torch._utils._rebuild_tensor_v2`` for our storages: a view, bounds checked by ``as_strided``."""
    if not isinstance(storage, torch.Tensor):
        raise CheckpointError(f"a tensor's storage is {type(storage).__name__}, not a storage record")
    if not (isinstance(storage_offset, int) and _ints(size) and _ints(stride) and len(size) == len(stride)):
        raise CheckpointError("malformed tensor shape, stride or offset in data.pkl")
    if backward_hooks:
        raise CheckpointError("a tensor in data.pkl carries backward hooks")
    return storage.as_strided(tuple(size), tuple(stride), storage_offset)


def _ints(values: Any) -> bool:
    return isinstance(values, tuple) and all(isinstance(v, int) and v >= 0 for v in values)


def _restore_type_tag(value: Any, _type: str) -> Any:
    return value


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a TorchScript pickle of weights needs; the archive's classes as data."""

    def __init__(self, reader: _Reader, data: bytes):
        import io

        super().__init__(io.BytesIO(data))
        self.reader = reader

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch.jit._pickle" and name in _TYPED_LIST_BUILDERS:
            return list
        if module == "torch.jit._pickle" and name == "restore_type_tag":
            return _restore_type_tag
        if module == "__torch__" or module.startswith("__torch__."):
            return _record_class(f"{module}.{name}")
        raise CheckpointError(
            f"{self.reader.path}: data.pkl names {module}.{name}, which is neither a tensor nor a class of the "
            "archive; refusing to read it"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        return self.reader.storage(pid)


def _record_class(qualified_name: str) -> type:
    """A class whose instances only store what the pickle gives them (NEWOBJ args, BUILD state)."""

    def new(cls, *args):
        obj = object.__new__(cls)
        ScriptObject.__init__(obj, qualified_name, None, args)
        return obj

    def setstate(self, state):
        self.state = state

    return type(
        "ScriptObject", (ScriptObject,), {"__new__": new, "__init__": lambda self, *a: None, "__setstate__": setstate}
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
