"""Tiny language models for tests and benches: a small BPE and a two-layer Llama trained for a
few hundred milliseconds on a handful of sentences. A suite or a bench runs memtok end to end on
them in seconds, offline (a real model is 100x larger and a hub is not always reachable)."""

import random

import torch

# What the tiny model is briefly trained on. An untrained random model cannot carry a text from one
# position to the next, so no memory vector could make it reproduce anything; a few seconds of
# training make it a small language model of these sentences, which memories then select and steer.
TEXTS = [
    "the cat sat on the mat.",
    "the cat ran to the park.",
    "a dog ran in the park.",
    "El perro corre en el parque.",
    "memory tokens turn text into vectors.",
    "vectors turn back into text again.",
    "Die Katze schläft auf dem Sofa.",
    "numbers: 3 + 4 = 7, 10 - 2 = 8.",
]

def build_tokenizer(texts: list[str] = TEXTS):
    """A byte-level BPE of 320 tokens trained on `texts`, with BOS <s> and EOS </s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<|endoftext|>")


def build_tiny_model_dir(path: str, texts: list[str] = TEXTS, context: int = 64) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_tok = build_tokenizer(texts)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(hf_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                         bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    fit(model, hf_tok, texts)
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


def fit(model, tok, texts: list[str], steps: int = 150, shifts: tuple[int, ...] = (0,)) -> None:
    """A few hundred milliseconds of next-token training on `texts`, each between BOS and EOS, and
    with `shifts` random tokens after the BOS: a model with learned absolute positions (GPT-2, OPT)
    trained with the text always at position 1 has never seen it one place later, where it sits
    behind a memory vector."""
    rng = random.Random(0)
    rows = [[tok.bos_token_id] + [rng.randrange(3, len(tok)) for _ in range(shift)]
            + tok(t, add_special_tokens=False).input_ids + [tok.eos_token_id] for t in texts for shift in shifts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.eos_token_id] * (width - len(r)) for r in rows])
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
