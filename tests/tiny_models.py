"""Tiny random-weight models of the paper's real architectures, saved like hub checkpoints.

They are built from small configs of the real transformers classes, written with
``save_pretrained`` and loaded back by the backends through their normal ``from_pretrained``
path, exactly as a user's model id or local directory would be.
"""

from __future__ import annotations

from pathlib import Path

import torch

# A word-piece vocabulary big enough for prompts such as "hand." and "a person's hand".
BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "'", "a", "s", "hand",
              "hands", "person", "glove", "tool", "door", "the", "of", "##s"]


def save_tiny_grounding_dino(path: Path, seed: int = 0) -> Path:
    """Grounding DINO (Swin + BERT) with a 32-wide transformer, and its processor."""
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(BERT_WORDS) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
                                   window_size=4, out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=len(BERT_WORDS), hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=64,
                               max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=20,
        num_feature_levels=3, encoder_n_points=2, decoder_n_points=2, max_text_len=32,
    )
    model = GroundingDinoForObjectDetection(config).eval()
    model.save_pretrained(path)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 128})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def save_tiny_owlv2(path: Path, seed: int = 0) -> Path:
    """OWLv2 (CLIP-style ViT + text tower) at 32 wide, 64 px, and its processor."""
    from transformers import (
        CLIPTokenizerFast,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    words = ["hand", "hands", "glove", "person", "a", "of", "tool", "door"]
    # Id 0 must not be the start token: OWLv2 treats a query whose first id is 0 as padding.
    vocab: dict[str, int] = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    for ch in "abcdefghijklmnopqrstuvwxyz.'":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    for w in words:
        vocab.setdefault(w + "</w>", len(vocab))
    merges = [("h", "a"), ("ha", "n"), ("han", "d</w>")]
    vocab.setdefault("ha", len(vocab))
    vocab.setdefault("han", len(vocab))
    # transformers 5 takes the vocabulary itself (a *_file keyword is silently ignored).
    tokenizer = CLIPTokenizerFast(vocab=vocab, merges=merges, pad_token="!")
    config = Owlv2Config(
        text_config={"vocab_size": len(vocab), "bos_token_id": 1, "eos_token_id": 2,
                     "pad_token_id": 0, "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2,
                     "max_position_embeddings": 16},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 64, "patch_size": 16},
        projection_dim=32,
    )
    Owlv2ForObjectDetection(config).eval().save_pretrained(path)
    image_processor = Owlv2ImageProcessor(size={"height": 64, "width": 64})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def save_tiny_encoder(kind: str, path: Path, seed: int = 0) -> Path:
    """A 32-px, 32-wide random-weight image encoder of a real class, with its image processor."""
    import transformers as tf

    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "image_size": 32, "patch_size": 16}
    if kind == "clip":
        model = tf.CLIPVisionModelWithProjection(tf.CLIPVisionConfig(**vision, projection_dim=16))
        processor = tf.CLIPImageProcessor(size={"shortest_edge": 32},
                                          crop_size={"height": 32, "width": 32})
    elif kind == "siglip":
        model = tf.SiglipVisionModel(tf.SiglipVisionConfig(**vision))
        processor = tf.SiglipImageProcessor(size={"height": 32, "width": 32})
    elif kind == "dinov2":
        config = tf.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 mlp_ratio=2, image_size=32, patch_size=16)
        model = tf.Dinov2Model(config)
        processor = tf.BitImageProcessor(size={"shortest_edge": 32},
                                         crop_size={"height": 32, "width": 32})
    elif kind == "blip2":
        config = tf.Blip2Config(
            vision_config=vision,
            qformer_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                            "intermediate_size": 64, "encoder_hidden_size": 32},
            num_query_tokens=4, image_text_hidden_size=16,
        )
        model = tf.Blip2VisionModelWithProjection(config)
        processor = tf.BlipImageProcessor(size={"height": 32, "width": 32})
    else:
        raise ValueError(kind)
    model.eval().save_pretrained(path)
    processor.save_pretrained(path)
    return path
