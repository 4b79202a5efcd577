"""The GPU benchmark's model: idefics-9b's exact shapes with random weights, and the bandwidth it could reach.

No download: the configuration is written out here from idefics-9b's `config.json` facts, and the
weights are made on the GPU directly (in bfloat16, without transformers' per-module initialisation,
which is slow for 9 B parameters), then optionally quantized to 4-bit NF4 with bitsandbytes the way
`model/loading.py` asks transformers to (embeddings and `lm_head` kept). Random weights decode as fast as
trained ones, so tokens/s, time to first token and memory mean what they would with the real checkpoint.

A decode step must read every weight once, so `weight bytes ÷ memory bandwidth` is the shortest a step
can be; `tokens/s ÷ (concurrency × bandwidth ÷ weight bytes)` says how close the engine comes to that
(an upper bound: it ignores reading the KV cache and the image states).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import IdeficsConfig, IdeficsForVisionText2Text, IdeficsImageProcessor, IdeficsProcessor
from transformers.initialization import no_init_weights

from model.loaded import END_OF_UTTERANCE, FAKE_IMAGE_TOKEN, IMAGE_TOKEN, LoadedModel

# idefics-9b (HuggingFaceM4/idefics-9b and -9b-instruct): LLaMA-7B text decoder, CLIP ViT-H/14 vision
# encoder, a perceiver resampler and a gated cross-attention layer before every 4th text layer.
IDEFICS_9B = dict(
    vocab_size=32000,
    additional_vocab_size=3,  # <fake_token_around_image>, <image>, <end_of_utterance>: ids 32000-32002
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    hidden_act="silu",
    rms_norm_eps=1e-6,
    max_position_embeddings=2048,
    cross_layer_interval=4,
    qk_layer_norms=False,
    tie_word_embeddings=False,
    use_resampler=True,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    vision_config=dict(
        embed_dim=1280,
        image_size=224,
        patch_size=14,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=16,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    ),
    perceiver_config=dict(
        use_resampler=True,
        resampler_n_latents=64,
        resampler_depth=6,
        resampler_n_heads=16,
        resampler_head_dim=96,
        qk_layer_norms_perceiver=False,
    ),
)

# Peak memory bandwidth in TB/s, matched against torch.cuda.get_device_name() (first match wins, so
# the more specific names come first). Override with --bandwidth-tbps for anything else.
BANDWIDTHS_TBPS = (
    (("gh200",), 4.0),
    (("h200",), 4.8),
    (("h100", "nvl"), 3.9),
    (("h100", "pcie"), 2.0),
    (("h100",), 3.35),  # SXM (the "H100 80GB HBM3")
    (("h800",), 3.35),
    (("b200",), 8.0),
    (("a100", "80gb", "pcie"), 1.935),
    (("a100", "80gb"), 2.039),  # SXM4
    (("a100",), 1.555),  # 40GB
    (("l40s",), 0.864),
    (("l40",), 0.864),
    (("l4",), 0.3),
    (("a10g",), 0.6),
    (("a10",), 0.6),
    (("rtx", "4090"), 1.008),
    (("rtx", "3090"), 0.936),
    (("v100",), 0.9),
    (("t4",), 0.32),
)


def idefics_9b_config(**overrides) -> IdeficsConfig:
    """idefics-9b's configuration, built by hand (no download); `overrides` for a smaller test copy."""
    return IdeficsConfig(**(IDEFICS_9B | overrides))


def known_bandwidth_tbps(device_name: str) -> float | None:
    """The table's bandwidth for a CUDA device name ("NVIDIA H100 80GB HBM3"), or None if unknown."""
    words = device_name.lower().replace("-", " ").replace("_", " ")
    for needles, tbps in BANDWIDTHS_TBPS:
        if all(_has_word(words, needle) for needle in needles):
            return tbps
    return None


def _has_word(words: str, needle: str) -> bool:
    """`needle` as a whole word or a word's start ("h100" in "h100 80gb", not "l4" in "l40s")."""
    return any(word == needle or (word.startswith(needle) and not word[len(needle)].isalnum())
               for word in words.split())  # fmt: skip


@dataclass(frozen=True)
class Bound:
    """What memory bandwidth allows: the shortest decode step, and tokens/s at a given concurrency."""

    weight_bytes: int
    bandwidth_bytes_per_s: float

    @property
    def step_s(self) -> float:
        return self.weight_bytes / self.bandwidth_bytes_per_s

    def tokens_per_s(self, concurrency: int) -> float:
        return concurrency / self.step_s

    def fraction(self, tokens_per_s: float, concurrency: int) -> float:
        """Measured tokens/s ÷ the bound at that concurrency (1.0 would be every byte read at full speed)."""
        return tokens_per_s / self.tokens_per_s(concurrency)


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of every parameter and buffer as stored (4-bit weights count their packed bytes)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def random_model(config: IdeficsConfig, device: str, dtype: torch.dtype, quantization: str = "none"):
    """An `IdeficsForVisionText2Text` with random weights made on `device`; "4bit" quantizes it (NF4)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), no_init_weights():
            model = IdeficsForVisionText2Text(config)
    finally:
        torch.set_default_dtype(previous)
    _fill_randomly(model, config.initializer_range)
    if quantization == "4bit":
        _quantize_4bit(model, dtype)
    elif quantization != "none":
        raise ValueError(f"quantization {quantization!r}: use none or 4bit")
    return model.eval()


@torch.no_grad()
def _fill_randomly(model: torch.nn.Module, std: float) -> None:
    """Matrices drawn from N(0, std); vectors (norm scales, gates, biases) set so activations stay sane."""
    for name, parameter in model.named_parameters():
        if parameter.dim() > 1:
            parameter.normal_(0.0, std)
        else:
            parameter.fill_(0.0 if name.endswith("bias") else 1.0)


# As model/loading.py tells transformers: the embeddings and the output head stay in full precision.
_KEEP_UNQUANTIZED = ("lm_head", "embed_tokens")


@torch.no_grad()
def _quantize_4bit(model: torch.nn.Module, compute_dtype: torch.dtype) -> None:
    """Every linear layer but the output head's becomes bitsandbytes' NF4 `Linear4bit` (double quantization)."""
    import bitsandbytes as bnb

    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            qualified = f"{parent_name}.{child_name}"
            if not isinstance(child, torch.nn.Linear) or any(skip in qualified for skip in _KEEP_UNQUANTIZED):
                continue
            device = child.weight.device
            quantized = bnb.nn.Linear4bit(
                child.in_features, child.out_features, bias=child.bias is not None,
                compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4", device="meta",
            )  # fmt: skip
            quantized.weight = bnb.nn.Params4bit(
                child.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4"
            ).to(device)
            if child.bias is not None:
                quantized.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, child_name, quantized)


def loaded_model(model, tokenizer, dtype: torch.dtype, name: str) -> LoadedModel:
    """What `model/loading.py` would hand on for this model: the processor, special ids, the device."""
    image_size = model.config.vision_config.image_size
    processor = IdeficsProcessor(image_processor=IdeficsImageProcessor(image_size=image_size), tokenizer=tokenizer)
    image_id, fake_id = tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, FAKE_IMAGE_TOKEN])
    return LoadedModel(
        model=model,
        processor=processor,
        model_id=name,
        device=model.get_input_embeddings().weight.device,  # "cuda:0", as the loader says it
        dtype=dtype,
        max_positions=int(model.config.max_position_embeddings),
        end_of_utterance_id=int(tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)),
        eos_token_id=int(tokenizer.eos_token_id),
        image_token_ids=(int(image_id), int(fake_id)),
    )
