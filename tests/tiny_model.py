"""A tiny random BERT (hidden 32, 2 layers, local WordPiece vocab) saved as a sentence-transformers
folder. It loads as SentenceTransformer, CrossEncoder and FlagReranker in seconds, offline."""
from __future__ import annotations

import string
from pathlib import Path

WORDS = """the a an of to in and or is are was be for on with as by at from that this it not
python function module class method return value list dict string file path error data model
query document search index retrieval rank score train test split corpus passage text token
""".split()


def build_tiny_bert(path: str | Path, seed: int = 0) -> str:
    """Save a randomly initialised tiny BERT with mean pooling + normalisation under `path`."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    raw = path / "hf"
    raw.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase) \
        + list(string.digits) + list(string.punctuation) + WORDS \
        + [f"##{c}" for c in string.ascii_lowercase + string.digits]
    vocab = list(dict.fromkeys(vocab))
    (raw / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 ignores vocab_file here; pass the vocab itself or every word becomes [UNK].
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    word = models.Transformer(str(raw), max_seq_length=64)
    pooling = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    st = SentenceTransformer(modules=[word, pooling, models.Normalize()], device="cpu")
    out = path / "st"
    st.save(str(out))
    return str(out)
