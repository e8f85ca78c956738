"""transformers networks for the architecture benchmark, built from their published configurations with random
initialisation (config classes only: nothing is downloaded), at reduced depth so a sweep stays in minutes.

Each is wrapped to take its inputs positionally and return its logits (a ModelOutput is a dict, which
torch.jit.trace refuses), with eager attention (what every exporter takes) in float32.
"""

from __future__ import annotations

import torch

BATCH = 4
TOKENS = 16  # sequence length of every token input
MEL_FRAMES = 64  # Whisper's encoder takes exactly 2 * max_source_positions frames

# The published configurations (hub config.json of the named checkpoint), less depth: name -> (checkpoint,
# network class, config class, published values, depth overrides, input kind).
CONFIGS = {
    "bert": ("bert-base-uncased", "BertForMaskedLM", "BertConfig", {
        "vocab_size": 30522, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072,
        "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
    }, {"num_hidden_layers": 4}, "tokens"),
    "distilbert": ("distilbert-base-uncased", "DistilBertForMaskedLM", "DistilBertConfig", {
        "vocab_size": 30522, "dim": 768, "n_heads": 12, "hidden_dim": 3072, "activation": "gelu",
        "max_position_embeddings": 512, "sinusoidal_pos_embds": False,
    }, {"n_layers": 4}, "tokens"),
    "roberta": ("roberta-base", "RobertaForMaskedLM", "RobertaConfig", {
        "vocab_size": 50265, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072,
        "hidden_act": "gelu", "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
    }, {"num_hidden_layers": 4}, "tokens"),
    # ALBERT shares one layer across all its calls: the published depth costs no parameters, so it is kept.
    "albert": ("albert-base-v2", "AlbertForMaskedLM", "AlbertConfig", {
        "vocab_size": 30000, "embedding_size": 128, "hidden_size": 768, "num_attention_heads": 12,
        "intermediate_size": 3072, "hidden_act": "gelu_new", "max_position_embeddings": 512, "type_vocab_size": 2,
        "num_hidden_groups": 1, "inner_group_num": 1,
    }, {"num_hidden_layers": 12}, "tokens"),
    "gpt2": ("gpt2", "GPT2LMHeadModel", "GPT2Config", {
        "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_head": 12, "activation_function": "gelu_new",
    }, {"n_layer": 4}, "tokens"),
    "t5": ("t5-small", "T5ForConditionalGeneration", "T5Config", {
        "vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_heads": 8,
        "relative_attention_num_buckets": 32, "feed_forward_proj": "relu", "decoder_start_token_id": 0,
    }, {"num_layers": 2, "num_decoder_layers": 2}, "seq2seq"),
    "vit": ("google/vit-base-patch16-224", "ViTForImageClassification", "ViTConfig", {
        "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072, "image_size": 224,
        "patch_size": 16, "num_labels": 1000,
    }, {"num_hidden_layers": 4}, "image"),
    # whisper-tiny's encoder reads 3000 mel frames (1500 positions); 64 frames keep its attention small.
    "whisper": ("openai/whisper-tiny", "WhisperForConditionalGeneration", "WhisperConfig", {
        "vocab_size": 51865, "num_mel_bins": 80, "d_model": 384, "encoder_attention_heads": 6,
        "decoder_attention_heads": 6, "encoder_ffn_dim": 1536, "decoder_ffn_dim": 1536, "max_target_positions": 448,
    }, {"encoder_layers": 2, "decoder_layers": 2, "max_source_positions": MEL_FRAMES // 2}, "audio"),
    # A Llama-style decoder: SmolLM-135M's published LlamaForCausalLM configuration (grouped-query attention,
    # RoPE, RMSNorm, SwiGLU, tied embeddings).
    "llama": ("HuggingFaceTB/SmolLM-135M", "LlamaForCausalLM", "LlamaConfig", {
        "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
        "num_key_value_heads": 3, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "hidden_act": "silu",
        "tie_word_embeddings": True,
    }, {"num_hidden_layers": 4}, "tokens"),
}


class TokenLogits(torch.nn.Module):
    """Token ids in, logits out."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.network(input_ids=input_ids).logits


class Seq2SeqLogits(TokenLogits):
    """Encoder token ids and decoder token ids in, the decoder's logits out."""

    def forward(self, input_ids: torch.Tensor, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        return self.network(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits


class ImageLogits(TokenLogits):
    """An image batch in, class logits out."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.network(pixel_values=pixel_values).logits


class AudioLogits(TokenLogits):
    """Log-mel features and decoder token ids in, the decoder's logits out."""

    def forward(self, input_features: torch.Tensor, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        return self.network(input_features=input_features, decoder_input_ids=decoder_input_ids).logits


_WRAPPERS = {"tokens": TokenLogits, "seq2seq": Seq2SeqLogits, "image": ImageLogits, "audio": AudioLogits}


def build_transformer(name: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The wrapped network at random initialisation, in eval mode, and an example input batch by name."""
    import transformers

    _, network_class, config_class, published, depth, kind = CONFIGS[name]
    config = getattr(transformers, config_class)(**published, **depth, attn_implementation="eager")
    torch.manual_seed(0)
    network = getattr(transformers, network_class)(config).to(torch.float32).eval()
    return _WRAPPERS[kind](network).eval(), _example_inputs(kind, config)


def _example_inputs(kind: str, config) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)

    def ids() -> torch.Tensor:
        return torch.randint(0, config.vocab_size, (BATCH, TOKENS), generator=generator)

    if kind == "tokens":
        return {"input_ids": ids()}
    if kind == "seq2seq":
        return {"input_ids": ids(), "decoder_input_ids": ids()}
    if kind == "image":
        side = config.image_size
        return {"pixel_values": torch.randn(BATCH, config.num_channels, side, side, generator=generator)}
    features = torch.randn(BATCH, config.num_mel_bins, MEL_FRAMES, generator=generator)
    return {"input_features": features, "decoder_input_ids": ids()}
