"""Named model presets: architectures small enough to train end to end on a laptop CPU."""

from __future__ import annotations

from collections.abc import Callable

from transformers import LlamaConfig, PretrainedConfig, PreTrainedTokenizerBase, ZayaConfig


def zaya_tiny(tokenizer: PreTrainedTokenizerBase) -> ZayaConfig:
    """ZAYA1's architecture (CCA attention, 8 query / 2 KV heads, top-1 MoE with a skip expert) at ~1.8M params."""
    return ZayaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=16,
        moe_intermediate_size=256,
        num_experts=4,
        router_hidden_size=32,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def llama_tiny(tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    """A dense baseline of similar size, to check that nothing in posttrain is ZAYA-specific."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


PRESETS: dict[str, Callable[[PreTrainedTokenizerBase], PretrainedConfig]] = {
    "zaya-tiny": zaya_tiny,
    "llama-tiny": llama_tiny,
}
