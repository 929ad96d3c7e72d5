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


TEXTS = WORDS + """Die Katzen schlafen gern in der warmen Sonne. Der Hund bellt laut im Garten. Die Züge fahren
nach Berlin und München. Wir kochen Suppe mit Kartoffeln. Dienst Speicher Netzwerk Protokoll Sicherung Suche
서울에서 가장 큰 공원은 한강 공원입니다. 부산은 바다와 해산물로 유명한 도시입니다. 고양이는 하루에 잡니다.
Le chat dort au soleil. El perro ladra en el jardín.""".split()


def build_tiny_xlmr(path: str | Path, seed: int = 0) -> str:
    """A tiny random XLM-RoBERTa (hidden 32, 2 layers) with a SentencePiece-style Unigram tokenizer
    trained here on a few German, Korean, English words: a non-BERT model and tokenizer (no
    token_type_ids, <s>/</s> specials, position ids offset by the padding index), offline."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import Unigram
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    path = Path(path)
    raw = path / "hf"
    raw.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(TEXTS * 3 + list(string.ascii_lowercase), trainers.UnigramTrainer(
        vocab_size=400, special_tokens=specials, unk_token="<unk>", shrinking_factor=0.9))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    tokenizer = XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64, max_position_embeddings=160,
                              type_vocab_size=1, pad_token_id=tok.token_to_id("<pad>"),
                              bos_token_id=tok.token_to_id("<s>"), eos_token_id=tok.token_to_id("</s>"))
    XLMRobertaModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    word = models.Transformer(str(raw), max_seq_length=64)
    pooling = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    st = SentenceTransformer(modules=[word, pooling, models.Normalize()], device="cpu")
    out = path / "st"
    st.save(str(out))
    return str(out)
