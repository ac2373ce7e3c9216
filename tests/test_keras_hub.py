"""keras-hub's Llama, Mistral, Qwen 3 and Gemma 3 attention reproduced by pygqa.

Toy models with random weights (nothing downloaded). For each architecture:
the converted attention class against keras-hub's (one call and cached
decoding, with the decoder's own masks), and the whole CausalLM with every
attention swapped for pygqa's: logits and greedy `generate()` tokens.

keras-hub is a test dependency: with PYGQA_REQUIRE_KERAS_HUB=1 (scripts/test.sh)
a missing keras-hub fails this module instead of skipping it.
"""

import os

import keras
import numpy as np
import pytest
from helpers import compiled, to_numpy
from keras import ops

try:
    import keras_hub
except ImportError:
    if os.environ.get("PYGQA_REQUIRE_KERAS_HUB"):
        raise
    pytest.skip("keras-hub is not installed (PYGQA_REQUIRE_KERAS_HUB=1 makes this fail)",
                allow_module_level=True)

from keras_hub.src.layers.modeling.transformer_layer_utils import compute_causal_mask

import pygqa
from pygqa.keras_hub import KerasHubAttention, swap_attention

# float32, the same operations in another order. Logits (scale ~6 here) are held
# to 1e-5 absolute (the bound); attention outputs, whose scale reaches
# ~30 with these weights, to 1e-5 of their largest magnitude.
TOLERANCE = 1e-5


def _relative(got, expected):
    return np.abs(got - expected).max() / max(1.0, float(np.abs(expected).max()))
VOCABULARY, LENGTH, WINDOW = 50, 12, 4
COMMON = dict(vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=4,
              num_key_value_heads=2, hidden_dim=32, intermediate_dim=64)
LARGEST = {}  # (architecture, what) -> largest difference, reported by the last test


def _build(architecture):
    keras.utils.set_random_seed(1)
    models = keras_hub.models
    if architecture == "llama":
        lm = models.LlamaCausalLM(backbone=models.LlamaBackbone(**COMMON), preprocessor=None)
    elif architecture == "mistral":
        backbone = models.MistralBackbone(**COMMON, sliding_window=WINDOW)
        lm = models.MistralCausalLM(backbone=backbone, preprocessor=None)
    elif architecture == "qwen3":
        lm = models.Qwen3CausalLM(backbone=models.Qwen3Backbone(**COMMON, head_dim=8),
                                  preprocessor=None)
    else:
        # Local layers (window 4, wavelength 1e4; the global layer, every sixth, is
        # tested alone below); a soft cap that acts on these logits, and
        # query_head_dim_normalize=False, which scales by 1/sqrt(hidden_dim / heads) =
        # 1/sqrt(8) instead of 1/sqrt(head_dim = 16).
        backbone = models.Gemma3Backbone(
            **COMMON, image_size=16, head_dim=16,
            query_head_dim_normalize=False, attention_logit_soft_cap=1.0,
            use_sliding_window_attention=True, sliding_window_size=WINDOW)
        lm = models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
    rng = np.random.default_rng(0)
    for variable in lm.weights:  # norm scales away from their initial 1 (Gemma: 0)
        if "norm" in variable.path:
            base = 0.0 if architecture == "gemma3" else 1.0
            variable.assign(base + rng.normal(scale=0.3, size=variable.shape).astype("float32"))
        elif "embeddings" in variable.path or "kernel" in variable.path:
            # Larger than the initializers': tied embeddings otherwise make the greedy
            # text repeat the prompt's last token, which would not test the cache.
            scale = 0.3 if "embeddings" in variable.path else 0.6
            variable.assign(rng.normal(scale=scale, size=variable.shape).astype("float32"))
    lm.compile(sampler="greedy")
    return lm


def _prompts(architecture):
    """Two right-padded prompts of 3 and 5 tokens in LENGTH slots."""
    rng = np.random.default_rng(5)
    padding = np.zeros((2, LENGTH), bool)
    padding[0, :3] = padding[1, :5] = True
    prompt = {"token_ids": np.where(padding, rng.integers(1, VOCABULARY, (2, LENGTH)), 0)
              .astype("int32"), "padding_mask": padding}
    if architecture == "gemma3":  # text only: no images
        prompt["images"] = np.zeros((2, 0, 16, 16, 3), "float32")
    return prompt


def _attentions(lm):
    return [getattr(block, "_self_attention_layer", None) or block.attention
            for block in lm.backbone.transformer_layers]


ARCHITECTURES = ["llama", "mistral", "qwen3", "gemma3"]


@pytest.fixture(scope="module", autouse=True)
def report_largest_differences(request):
    """After the module: the largest differences measured, per architecture."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    reporter.write_line("")
    for (architecture, what), difference in sorted(LARGEST.items()):
        reporter.write_line(f"keras-hub parity ({keras.backend.backend()}): {architecture:<8} "
                            f"{what:<17} {difference:.2e}")


@pytest.fixture(scope="module", params=ARCHITECTURES)
def swapped(request):
    """keras-hub's results, then the same model's with pygqa's attention."""
    architecture = request.param
    lm = _build(architecture)
    prompt = _prompts(architecture)
    tokens = {"token_ids": prompt["token_ids"], "padding_mask": np.ones((2, LENGTH), bool)}
    theirs = dict(logits=to_numpy(lm(tokens)),
                  generated=to_numpy(lm.generate(dict(prompt), stop_token_ids=None)["token_ids"]),
                  attentions=_attentions(lm))
    layers = swap_attention(lm)
    ours = dict(logits=to_numpy(lm(tokens)),
                generated=to_numpy(lm.generate(dict(prompt), stop_token_ids=None)["token_ids"]),
                layers=layers)
    return architecture, lm, theirs, ours


def _record(architecture, what, difference):
    key = (architecture, what)
    LARGEST[key] = max(LARGEST.get(key, 0.0), float(difference))


def test_whole_model_logits_equal(swapped):
    architecture, lm, theirs, ours = swapped
    difference = np.abs(ours["logits"] - theirs["logits"]).max()
    _record(architecture, "logits", difference)
    _record(architecture, "logits scale", np.abs(theirs["logits"]).max())
    assert difference <= TOLERANCE
    assert all(isinstance(a, KerasHubAttention) for a in _attentions(lm))
    # The model's weights are the new layers' (each in its old place), and as many.
    assert sum(len(layer.weights) for layer in ours["layers"]) == sum(
        len(a.weights) for a in theirs["attentions"])


def test_whole_model_generates_the_same_tokens(swapped):
    architecture, _, theirs, ours = swapped
    np.testing.assert_array_equal(ours["generated"], theirs["generated"])
    # The prompts stay, and the greedy text is not one token repeated (a weak check).
    assert len(np.unique(theirs["generated"][:, 5:])) > 2


def _decoder_mask(architecture, batch, length, max_length, index):
    """The mask keras-hub's decoder block gives its attention (Mistral adds its window)."""
    mask = compute_causal_mask(batch, max_length, length, index)
    if architecture == "mistral":
        rows = ops.arange(length)[:, None] + index
        mask = ops.minimum(mask, ops.cast(rows < ops.arange(max_length)[None] + WINDOW, "int32"))
    return mask


def _call(layer, architecture, x, mask, cache=None, index=None):
    if architecture == "gemma3" and cache is not None:
        return layer(x, attention_mask=mask, cache=cache, cache_update_index=index)
    if cache is None:
        return layer(x, attention_mask=mask)
    return layer(hidden_states=x, attention_mask=mask, cache=cache, cache_update_index=index)


def _compiled_step(layer, architecture):
    """One decoding call of `layer` with the decoder's mask, compiled where users compile."""

    def step(x, cache, index):
        mask = _decoder_mask(architecture, x.shape[0], x.shape[1], LENGTH, index)
        return _call(layer, architecture, x, mask, cache, index)

    return compiled(step)


def test_each_attention_class_converts_exactly(swapped):
    architecture, _, theirs, ours = swapped
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, LENGTH, 32)).astype("float32")
    for their_layer, our_layer in zip(theirs["attentions"], ours["layers"]):
        adapter = KerasHubAttention(our_layer)
        mask = _decoder_mask(architecture, 2, LENGTH, LENGTH, 0)
        difference = _relative(to_numpy(our_layer(x, attention_mask=ops.cast(mask, "bool"))),
                               to_numpy(_call(their_layer, architecture, x, mask)))
        _record(architecture, "attention (rel)", difference)
        assert difference <= TOLERANCE
        # Cached decoding in keras-hub's cache layout past the window (4): prefill 3, then
        # one position per call up to position 7.
        heads, head_dim = our_layer.num_key_value_heads, our_layer.head_dim
        if architecture == "gemma3":
            cache = (np.zeros((2, LENGTH, heads, head_dim), "float32"),) * 2
        else:
            cache = np.zeros((2, 2, LENGTH, heads, head_dim), "float32")
        steps = [_compiled_step(layer, architecture) for layer in (their_layer, adapter)]
        caches = [cache, cache]
        for start, end in [(0, 3)] + [(i, i + 1) for i in range(3, 8)]:
            index = ops.convert_to_tensor(start, "int32")  # as generate() passes it
            outputs = []
            for j, step in enumerate(steps):
                out, caches[j] = step(x[:, start:end], caches[j], index)
                outputs.append(to_numpy(out))
            difference = _relative(outputs[1], outputs[0])
            _record(architecture, "cached (rel)", difference)
            assert difference <= TOLERANCE
        their_cache, our_cache = (np.asarray(to_numpy(ops.stack(list(c), 1)) if
                                             isinstance(c, tuple) else to_numpy(c)) for c in caches)
        assert _relative(our_cache, their_cache) <= TOLERANCE


def test_gemma3_global_attention_converts_exactly():
    # Gemma 3's global layers: no window, wavelength 1e6, linear rope scaling, and
    # query_head_dim_normalize=True (1/sqrt(head_dim)); norms with random scales.
    from keras_hub.src.models.gemma3.gemma3_attention import CachedGemma3Attention

    theirs = CachedGemma3Attention(head_dim=8, num_query_heads=4, num_key_value_heads=2,
                                   use_query_key_norm=True, rope_wavelength=1_000_000.0,
                                   rope_scaling_factor=8.0)
    theirs.build((None, None, 32))
    rng = np.random.default_rng(4)
    for variable in theirs.weights:
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype("float32"))
    ours = pygqa.from_keras_hub(theirs, flash_attention=False)  # paths: test_rotary.py
    carried = (ours.sliding_window, ours.attention_scale, ours.rope_scaling_factor)
    assert carried == (None, None, 8.0)
    x = rng.normal(size=(2, 9, 32)).astype("float32")
    mask = compute_causal_mask(2, 9, 9, 0)
    assert _relative(to_numpy(ours(x, attention_mask=ops.cast(mask, "bool"))),
                     to_numpy(theirs(x, attention_mask=mask))) <= TOLERANCE


def test_converter_refuses_what_it_cannot_reproduce():
    from keras_hub.src.models.llama.llama_attention import LlamaAttention

    with pytest.raises(TypeError, match="`layer`: expected a built keras-hub attention.*Dense"):
        pygqa.from_keras_hub(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="expected a built layer.*built=False"):
        pygqa.from_keras_hub(LlamaAttention(num_query_heads=4, num_key_value_heads=2))
    lm = _build("llama")
    swap_attention(lm)
    with pytest.raises(ValueError, match="already pygqa's"):
        swap_attention(lm)
    with pytest.raises(TypeError, match="`causal_lm`: expected a keras-hub CausalLM"):
        swap_attention(keras.Sequential([]))


def test_llama3_frequency_adjustment_converts_exactly():
    # head_dim 8, wavelength 1e4: pair wavelengths 6.3, 63, 628, 6283 against an original
    # length 64 with factors 1 and 4: one pair kept, one blended, two slowed.
    from keras_hub.src.models.llama.llama_attention import LlamaAttention

    theirs = LlamaAttention(num_query_heads=4, num_key_value_heads=2,
                            rope_frequency_adjustment_factor=8.0, rope_low_freq_factor=1.0,
                            rope_high_freq_factor=4.0, rope_pretraining_sequence_length=64)
    theirs.build((None, None, 32))
    ours = pygqa.from_keras_hub(theirs, flash_attention=False)  # paths: test_rotary.py
    assert ours.rope_frequency_adjustment == dict(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_length=64.0)
    x = np.random.default_rng(6).normal(size=(1, 40, 32)).astype("float32")
    mask = compute_causal_mask(1, 40, 40, 0)
    assert _relative(to_numpy(ours(x, attention_mask=ops.cast(mask, "bool"))),
                     to_numpy(theirs(x, attention_mask=mask))) <= TOLERANCE
    plain = pygqa.from_keras_hub(theirs, rope_frequency_adjustment=None,  # it matters
                                 flash_attention=False)
    assert _relative(to_numpy(plain(x, attention_mask=ops.cast(mask, "bool"))),
                     to_numpy(theirs(x, attention_mask=mask))) > 1e-3


def test_llama_position_scaling_factor_is_what_keras_hub_computes():
    # keras-hub's LlamaRotaryEmbedding leaves its position scaling factor out of
    # the frequencies; the converted layer does the same (rope_scaling_factor 1).
    from keras_hub.src.models.llama.llama_attention import LlamaAttention

    theirs = LlamaAttention(num_query_heads=4, num_key_value_heads=2,
                            rope_position_scaling_factor=4.0, rope_max_wavelength=50)
    theirs.build((None, None, 32))
    ours = pygqa.from_keras_hub(theirs, flash_attention=False)  # paths: test_rotary.py
    assert ours.rope_scaling_factor == 1.0
    x = np.random.default_rng(3).normal(size=(1, 9, 32)).astype("float32")
    mask = compute_causal_mask(1, 9, 9, 0)
    assert _relative(to_numpy(ours(x, attention_mask=ops.cast(mask, "bool"))),
                     to_numpy(theirs(x, attention_mask=mask))) <= TOLERANCE
