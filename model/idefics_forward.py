"""IDEFICS's text forward pass with each row's image keys and values computed once, not at every step.

`IdeficsModel.forward` (transformers 5.x, modeling_idefics.py) runs the perceiver resampler over the
vision encoder's outputs and projects every gated cross-attention layer's image keys and values on
each call, so `generate` pays for them again at every decode step although they never change. Here
they are computed once per request (`image_kv`, from the resampled latents) and passed to every
forward; the rest is the same computation as the library's, in the same order, over the model's own
modules: embeddings, positions from the attention mask, the causal mask, each decoder layer (which
caches its self-attention KV in a `DynamicCache`), and before every `cross_layer_interval`-th layer a
gated cross-attention block whose query attends to the cached image keys/values through the image
attention mask (each text token sees only the most recent image before it; tokens before the first
image see none and the gate zeroes their cross-attention output). Greedy tokens match `generate`'s
(tests/model/test_decoding.py).

A gated cross-attention block is used through its parts, not its `forward`, so the hook accelerate put
on it (a model spread over several GPUs, or partly offloaded to CPU RAM or disk by `device_map="auto"`)
would never run: `_dispatched` runs it around those parts, which brings the block's weights in and the
tensors to its device, as calling the block would (tests/model/test_offloaded_model.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers.masking_utils import create_causal_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.idefics.modeling_idefics import eager_attention_forward

ImageKV = list[tuple[torch.Tensor, torch.Tensor]]  # per cross-attention layer: (batch, heads, slots, head_dim)


def image_latents(model, encoder_states: torch.Tensor) -> torch.Tensor:
    """`(images, latents, dim)` perceiver outputs for `(images, patches, dim)` vision-encoder outputs."""
    idefics = model.model
    if idefics.config.use_resampler:
        return idefics.perceiver_resampler(encoder_states)
    return encoder_states


def image_kv(model, latents: torch.Tensor) -> ImageKV:
    """Each cross-attention layer's keys and values for `(batch, images, latents, dim)` image latents."""
    batch, images, count, dim = latents.shape
    flat = latents.reshape(batch, images * count, dim)
    out: ImageKV = []
    for layer in model.model.gated_cross_attn_layers:
        attention = layer.cross_attn
        shape = (batch, images * count, attention.num_heads, attention.head_dim)
        with _dispatched(layer, flat) as (on_device,):
            keys = attention.k_proj(on_device).view(shape).transpose(1, 2)
            values = attention.v_proj(on_device).view(shape).transpose(1, 2)
            if attention.qk_layer_norms:
                keys = attention.k_layer_norm(keys)
        out.append((keys, values))
    return out


@contextlib.contextmanager
def _dispatched(module: torch.nn.Module, *tensors: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
    """`tensors` on `module`'s device with its weights loaded, as accelerate's hook does for a call."""
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        yield tensors
        return
    moved, _ = hook.pre_forward(module, *tensors)
    try:
        yield tuple(moved)
    finally:
        hook.post_forward(module, None)


def forward(
    model,
    *,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    cache,
    image_kv: ImageKV,
    image_mask: torch.Tensor,
) -> torch.Tensor:
    """Logits `(batch, vocab)` of each row's last position; `cache` grows by `input_ids`' length.

    `attention_mask` covers the cached tokens and `input_ids`; `image_mask` is `(batch, new tokens,
    image slots)`, one-hot on the image each new token attends to (or all zero).
    """
    idefics = model.model
    embeds = idefics.embed_tokens(input_ids)
    length = input_ids.shape[1]
    position_ids = attention_mask.long().cumsum(-1) - 1
    position_ids.masked_fill_(attention_mask == 0, 1)
    position_ids = position_ids[:, -length:]
    latents = image_kv[0][0].shape[2] // image_mask.shape[-1] if image_kv else 1
    cross_mask, gate = _cross_mask(image_mask, latents, embeds.dtype)
    causal_mask = create_causal_mask(
        config=idefics.config,
        inputs_embeds=embeds,
        attention_mask=attention_mask,
        cache=cache,
        position_ids=position_ids,
    )
    hidden = embeds
    for index, decoder_layer in enumerate(idefics.layers):
        if index % idefics.cross_layer_interval == 0:
            block = idefics.gated_cross_attn_layers[index // idefics.cross_layer_interval]
            keys, values = image_kv[index // idefics.cross_layer_interval]
            hidden = _gated_cross_attention(block, hidden, keys, values, cross_mask, gate)
        hidden = decoder_layer(hidden, attention_mask=causal_mask, position_ids=position_ids, cache=cache)
    hidden = idefics.norm(hidden[:, -1:, :])
    return model.lm_head(hidden)[:, -1, :]


def _cross_mask(image_mask: torch.Tensor, latents: int, dtype: torch.dtype):
    """The library's additive `(batch, 1, tokens, slots)` mask and `(batch, tokens)` gate, built the same way."""
    expanded = image_mask[..., None].expand(-1, -1, -1, latents).reshape(*image_mask.shape[:2], -1)
    additive = torch.where(
        expanded[:, None, :, :].bool(),
        torch.full((), 0.0, device=image_mask.device, dtype=dtype),
        torch.finfo(dtype).min,
    )
    gate = (additive == 0.0).any(dim=-1).to(dtype=dtype).squeeze(dim=1)
    return additive, gate


def _gated_cross_attention(block, hidden, keys, values, mask, gate) -> torch.Tensor:
    """`IdeficsGatedCrossAttentionLayer.forward` with the image keys/values already projected."""
    with _dispatched(block, hidden, keys, values, mask, gate) as (hidden, keys, values, mask, gate):
        return _cross_attention_parts(block, hidden, keys, values, mask, gate)


def _cross_attention_parts(block, hidden, keys, values, mask, gate) -> torch.Tensor:
    attention = block.cross_attn
    residual = hidden
    normed = block.input_layernorm(hidden)
    batch, length, _ = normed.shape
    query = attention.q_proj(normed).view(batch, length, attention.num_heads, attention.head_dim).transpose(1, 2)
    if attention.qk_layer_norms:
        query = attention.q_layer_norm(query)
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention_forward)
    out, _ = attend(attention, query, keys, values, mask, dropout=0.0, scaling=attention.scaling)
    out = attention.o_proj(out.reshape(batch, length, -1).contiguous())
    out = out.masked_fill((gate == 0)[:, :, None], 0.0)
    hidden = residual + block.act_cross_attn(block.alpha_cross_attn) * out
    residual = hidden
    hidden = block.mlp(block.post_attention_layernorm(hidden))
    return residual + block.act_dense(block.alpha_dense) * hidden


def pad_slots(kv: ImageKV, slots: int) -> ImageKV:
    """Zero-pad each layer's image axis to `slots` (latents × images); the image mask hides the padding."""
    out: ImageKV = []
    for keys, values in kv:
        missing = slots - keys.shape[2]
        if missing > 0:
            shape = (keys.shape[0], keys.shape[1], missing, keys.shape[3])
            keys = torch.cat([keys, keys.new_zeros(shape)], dim=2)
            values = torch.cat([values, values.new_zeros(shape)], dim=2)
        out.append((keys, values))
    return out


def select_rows(kv: ImageKV, index: torch.Tensor) -> ImageKV:
    return [(keys[index.to(keys.device)], values[index.to(values.device)]) for keys, values in kv]


def concat_rows(first: ImageKV, second: ImageKV) -> ImageKV:
    slots = max(first[0][0].shape[2], second[0][0].shape[2]) if first else 0
    a, b = pad_slots(first, slots), pad_slots(second, slots)
    return [(torch.cat([ka, kb]), torch.cat([va, vb])) for (ka, va), (kb, vb) in zip(a, b, strict=True)]

