"""Every common causal-LM family round-trips: a tiny model of each, built from its config here.

Families differ where memory vectors touch them: Gemma scales its input embeddings inside the
lookup, GPT-2 and OPT add learned absolute positions (OPT with an offset), GPT-NeoX rotates a
part of each head, Phi-3 fuses its projections, OLMo 2 normalises after each block and its
queries and keys, Falcon shares one key and value head, some tie their output head. Each tiny
model is trained for a moment on TEXTS with the text at three offsets after BOS (a model with
learned positions trained at one offset has never seen the text one place later, where it sits
behind a memory), then a memory of one vector must decode exactly, its start on the scale of the
model's own input vectors.
"""

import pytest
import torch
from helpers import DEVICE, TEXTS, build_tokenizer, fit

from memtok import MemoryCodec, MemtokError
from memtok.model.loading import check_takes_vectors

LAYERS = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64)


def _families() -> dict:
    import transformers as t

    return {
        "llama": (t.LlamaConfig, t.LlamaForCausalLM, LAYERS),
        "mistral": (t.MistralConfig, t.MistralForCausalLM, LAYERS),
        "qwen2": (t.Qwen2Config, t.Qwen2ForCausalLM, LAYERS),
        "qwen3": (t.Qwen3Config, t.Qwen3ForCausalLM, {**LAYERS, "head_dim": 16}),
        "gemma3": (t.Gemma3TextConfig, t.Gemma3ForCausalLM, {**LAYERS, "head_dim": 16, "sliding_window": 16}),
        "gpt2": (t.GPT2Config, t.GPT2LMHeadModel, dict(n_embd=64, n_layer=2, n_head=4, n_positions=64)),
        "gpt_neox": (t.GPTNeoXConfig, t.GPTNeoXForCausalLM,
                     dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                          max_position_embeddings=64, rotary_pct=0.25)),
        "opt": (t.OPTConfig, t.OPTForCausalLM, dict(hidden_size=64, ffn_dim=128, num_hidden_layers=2,
                                                    num_attention_heads=4, max_position_embeddings=64,
                                                    word_embed_proj_dim=64)),
        "phi3": (t.Phi3Config, t.Phi3ForCausalLM, {**LAYERS, "pad_token_id": 0}),
        "olmo2": (t.Olmo2Config, t.Olmo2ForCausalLM, LAYERS),
        "falcon": (t.FalconConfig, t.FalconForCausalLM, dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                             max_position_embeddings=64, multi_query=True)),
    }


FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma3", "gpt2", "gpt_neox", "opt", "phi3", "olmo2", "falcon"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.slow  # eleven models built and trained here: ~45 s in all
def test_a_family_round_trips_from_one_vector(family, tokenizer, tmp_path):
    config_class, model_class, sizes = _families()[family]
    torch.manual_seed(0)
    model = model_class(config_class(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                     eos_token_id=tokenizer.eos_token_id, **sizes))
    fit(model, tokenizer, TEXTS, steps=300, shifts=(0, 1, 2))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    codec = MemoryCodec.from_pretrained(str(tmp_path), device=DEVICE)
    texts = [TEXTS[0], TEXTS[4]]
    mems = codec.encode(texts, k=1, max_steps=600)
    assert [m.exact for m in mems] == [True, True], [(m.steps, m.min_margin) for m in mems]
    assert codec.decode(mems) == texts
    # the vectors start, and their random basis is scaled, in the space the layers see: the model's own
    # lookup, which Gemma scales by sqrt(d), not its weight rows. std in float64 (memtok) and float32
    # (here) over 64 x 320 values agree to ~1e-6 relative; 1e-4 leaves room and still tells a factor of 8
    seen = codec.lm.embed(torch.arange(len(tokenizer), device=codec.lm.device)).double()
    assert abs(codec.lm.embedding_std / float(seen.std(unbiased=False)) - 1) < 1e-4
    assert torch.allclose(codec.lm.embedding_mean.double(), seen.mean(0), rtol=0, atol=1e-4 * float(seen.std()))


def test_a_model_that_takes_no_input_vectors_is_refused_at_load():
    class IdsOnly(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None):
            return input_ids

    with pytest.raises(MemtokError, match="takes no input vectors"):
        check_takes_vectors(IdsOnly(), "ids-only")
