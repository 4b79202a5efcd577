"""The engine's multi-row linears on CPU in float32 through oneDNN, with weights packed once.

On CPU, `F.linear` in float32 is MKL's sgemm, which runs a matmul of 8 rows at about its 1-row FLOP
rate: a decode step of 8 rows cost about twice a step of 1, and batching gave at most ~4x. oneDNN with
its weights reordered ahead of time ("prepacked") runs the same 8-row linear ~2.5x faster, which is what
torch.compile's CPU path (inductor) does: `torch.ops.mkldnn._reorder_linear_weight` once per weight,
then `torch.ops.mkldnn._linear_pointwise` per call. PyTorch has no public way to this: its one public
route, `torch.utils.mkldnn.to_mkldnn`'s `MkldnnLinear`, converts activations to and from oneDNN's
layout on every call and measured slower than these ops (README, Speed). So the private ops are
guarded: they must exist and a probe must match `F.linear` (else nothing changes), one-row calls stay
with MKL (as fast there), and `CPU_PACKED_LINEARS=false` turns it off.

The model is the library's, so its `nn.Linear` modules of the text path (decoder layers, gated
cross-attention blocks, `lm_head`) get an instance `forward`, as accelerate's hooks do, that takes the
packed route only while the engine's worker `engaged()` it on its own thread: `generate`, scoring and
any other thread see `F.linear`. Packed weights are a second copy of the float32 weights, so packing
stops at MEMORY_SHARE of the memory available when they are made (the rest stay with MKL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from transformers.models.idefics.modeling_idefics import IdeficsDecoupledLinear

logger = logging.getLogger(__name__)

MEMORY_SHARE = 0.25
_ATTRIBUTE = "_engine_packed_linears"
_BATCH_HINT = 8  # oneDNN picks the packed layout for inputs of about this many rows
_MAKING = threading.Lock()  # the workers of several services of one model start at once


class PackedLinears:
    """The packed weights of one model's eligible linears; `engaged()` routes multi-row calls to them."""

    def __init__(self, model: torch.nn.Module, budget_bytes: int) -> None:
        self._local = threading.local()
        self._packed: dict[torch.nn.Linear, torch.Tensor] = {}
        used = 0
        for module in _text_path_linears(model):
            size = module.weight.numel() * module.weight.element_size()
            if used + size > budget_bytes:
                logger.info("packed linears: memory budget reached, the rest stay with F.linear")
                break
            self._packed[module] = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), _BATCH_HINT)
            used += size
            module.forward = _packed_forward(self, module)
        self.bytes = used

    def __len__(self) -> int:
        return len(self._packed)

    @property
    def active(self) -> bool:
        return getattr(self._local, "engaged", False)

    @contextlib.contextmanager
    def engaged(self) -> Iterator[None]:
        """Multi-row linears of this thread take the packed route inside the block."""
        before = self.active
        self._local.engaged = True
        try:
            yield
        finally:
            self._local.engaged = before

    def linear(self, module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        if self.active and x.numel() > x.shape[-1] and not x.requires_grad:
            return torch.ops.mkldnn._linear_pointwise(x, self._packed[module], module.bias, "none", [], "")
        return F.linear(x, module.weight, module.bias)


def packed_linears_for(model: torch.nn.Module) -> PackedLinears | None:
    """The model's packed linears (made once, shared by every service of the model); None where unusable."""
    with _MAKING:
        existing = getattr(model, _ATTRIBUTE, None)
        if existing is not None:
            return existing
        if not available() or not any(True for _ in _text_path_linears(model)):
            return None
        packed = PackedLinears(model, int(available_memory() * MEMORY_SHARE))
        setattr(model, _ATTRIBUTE, packed)
    logger.info("packed linears: %d modules, %d MiB", len(packed), packed.bytes // 2**20)
    return packed


def available() -> bool:
    """oneDNN's linear ops exist here and agree with `F.linear` on a probe."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        with torch.inference_mode():
            # (fixed values, not random ones: probing must not move anyone's random number generator)
            weight = torch.linspace(-1.0, 1.0, 48 * 32).reshape(48, 32).sin()
            bias, x = torch.linspace(-0.5, 0.5, 48), torch.linspace(-2.0, 2.0, 3 * 5 * 32).reshape(3, 5, 32).cos()
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, _BATCH_HINT)
            out = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
            return bool(torch.allclose(out, F.linear(x, weight, bias), atol=1e-4, rtol=1e-4))
    except (AttributeError, RuntimeError, NotImplementedError) as exc:
        logger.info("packed linears unavailable: %s", exc)
        return False


def available_memory() -> int:
    """Bytes of memory available (Linux's MemAvailable, else free pages); 0 where unknown: nothing is packed."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 0


def _text_path_linears(model: torch.nn.Module) -> Iterator[torch.nn.Linear]:
    """Plain float32 CPU linears of the decoder, the cross-attention blocks and `lm_head` (IDEFICS's
    decoupled linear: its own weight, then its `additional_fc` for the added tokens), not offloaded."""
    idefics = model.model
    for part in (idefics.layers, idefics.gated_cross_attn_layers, model.lm_head):
        for module in part.modules():
            if (
                type(module) in (torch.nn.Linear, IdeficsDecoupledLinear)
                and module.weight.device.type == "cpu"
                and module.weight.dtype == torch.float32
                and not hasattr(module, "_hf_hook")
            ):
                yield module


def _packed_forward(packed: PackedLinears, module: torch.nn.Linear):
    """The module's own `forward` with `F.linear` on its weight replaced by `packed.linear`."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return packed.linear(module, x)

    def decoupled_forward(x: torch.Tensor) -> torch.Tensor:  # IdeficsDecoupledLinear.forward
        output = packed.linear(module, x)
        if module.out_additional_features > 0:
            output = torch.cat((output, module.additional_fc(x)), -1)
        return output

    return decoupled_forward if isinstance(module, IdeficsDecoupledLinear) else forward
