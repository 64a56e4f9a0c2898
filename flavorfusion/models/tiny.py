"""A small random LED and a byte-level BPE tokenizer trained locally: tests and the offline quickstart
need no download."""

import json

from tokenizers import ByteLevelBPETokenizer
from transformers import LEDConfig, LEDForConditionalGeneration, PreTrainedTokenizerFast

from flavorfusion.data.encoding import DOC_SEP

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as in BART/LED


def review_texts(path: str):
    """Every review and summary of a JSONL file of review groups (the tokenizer's training corpus)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                yield from record.get("reviews") or []
                if record.get("summary"):
                    yield record["summary"]


def train_tokenizer(corpus: str, vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(review_texts(corpus), vocab_size=vocab_size, min_frequency=2,
                            special_tokens=SPECIAL_TOKENS, show_progress=False)
    from tokenizers.processors import TemplateProcessing

    bpe.post_processor = TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                            special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", pad_token="<pad>",
                                        eos_token="</s>", unk_token="<unk>", mask_token="<mask>",
                                        model_max_length=4096)
    tokenizer.add_special_tokens({"additional_special_tokens": [DOC_SEP]})
    return tokenizer


def build_tiny_led(tokenizer, d_model: int = 64, layers: int = 2, heads: int = 4, ffn_dim: int = 128,
                   attention_window: int = 32, max_source_positions: int = 1024,
                   max_target_positions: int = 256, seed: int = 0) -> LEDForConditionalGeneration:
    import torch

    config = LEDConfig(
        vocab_size=len(tokenizer), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn_dim,
        decoder_ffn_dim=ffn_dim, attention_window=[attention_window] * layers,
        max_encoder_position_embeddings=max_source_positions,
        max_decoder_position_embeddings=max_target_positions,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
    )
    # same weights for the same config; the forked RNG leaves the run's seed driving dropout and shuffling
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LEDForConditionalGeneration(config)


def widen_weights(model, std: float = 0.5, seed: int = 1):
    """Every matrix of `model` drawn again at `std`, seeded. A random init at std 0.02 decodes one string for every
    input, so a comparison of summaries (across engines, batches, exports) would hold trivially; with wider weights a
    summary depends on its input. Returns the model."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model
