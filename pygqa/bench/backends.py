"""Backend-specific execution: each layer call is run the way users run that backend.

- tensorflow: `tf.function` without XLA (what `fit`/`predict` use on CPU; XLA is
  slower here), gradients with `tf.GradientTape`.
- jax: `jax.jit` of a pure function built on `layer.stateless_call`, gradients with
  `jax.value_and_grad`; compiled ahead of time so compilation is never timed.
- torch: eager; forward under `torch.no_grad()` (as `predict` does), backward with
  `loss.backward()`.

Forward+backward differentiates `sum(output)` with respect to the input and every
trainable weight (a layer inside a model needs both). Returned attention scores are
kept as an output of the compiled function, so they are really computed.
"""

import keras
import numpy as np

BACKEND = keras.backend.backend()


class Step:
    """One compiled layer call on fixed inputs.

    `prepare()` compiles (or traces) without running; `run()` executes once and
    waits until the result exists, and returns it.
    """

    def __init__(self, run, prepare=None):
        self._run = run
        self._prepare = prepare
        self._prepared = prepare is None

    def prepare(self):
        if not self._prepared:
            self._prepare()
            self._prepared = True

    def run(self):
        self.prepare()
        return block(self._run())


def block(result):
    """Wait for asynchronous work (jax dispatches asynchronously; tf and torch CPU do not)."""
    if BACKEND == "jax":
        import jax

        return jax.block_until_ready(result)
    return result


def to_numpy(x):
    if BACKEND == "torch":
        import torch

        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()  # numpy has no bf16
    return keras.ops.convert_to_numpy(x)


def make_input(batch, length, features, seed=0):
    """A float32 normal input tensor of shape (batch, length, features)."""
    x = np.random.default_rng(seed).standard_normal((batch, length, features), dtype=np.float32)
    return keras.ops.convert_to_tensor(x)


def make_step(layer, x, mode, call_kwargs):
    """A `Step` calling `layer(x, x, **call_kwargs)` in `mode` ("fwd" or "fwdbwd")."""
    factory = {"tensorflow": _tensorflow_step, "jax": _jax_step, "torch": _torch_step}[BACKEND]
    return factory(layer, x, mode, dict(call_kwargs))


def _main_output(out, call_kwargs):
    return out[0] if call_kwargs.get("return_attention_scores") else out


def _tensorflow_step(layer, x, mode, kw):
    import tensorflow as tf

    if mode == "fwd":

        @tf.function(jit_compile=False)
        def fn(x):
            return layer(x, x, training=False, **kw)

    else:
        weights = layer.trainable_weights

        @tf.function(jit_compile=False)
        def fn(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = layer(x, x, training=True, **kw)
                loss = tf.reduce_sum(_main_output(out, kw))
            grads = tape.gradient(loss, [x, *weights])
            return out, grads

    return Step(lambda: fn(x), prepare=lambda: fn.get_concrete_function(x))


def _jax_step(layer, x, mode, kw):
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def forward(trainable, non_trainable, x, training):
        out, _ = layer.stateless_call(trainable, non_trainable, x, x, training=training, **kw)
        return out

    if mode == "fwd":
        fn = jax.jit(lambda tv, ntv, x: forward(tv, ntv, x, False))
    else:

        def loss(tv, x, ntv):
            out = forward(tv, ntv, x, True)
            return jnp.sum(_main_output(out, kw)), out  # out as aux: scores stay computed

        fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))

    args = (trainable, non_trainable, x) if mode == "fwd" else (trainable, x, non_trainable)
    compiled = []

    def prepare():
        compiled.append(fn.lower(*args).compile())

    return Step(lambda: compiled[0](*args), prepare=prepare)


def _torch_step(layer, x, mode, kw):
    import torch

    if mode == "fwd":

        def run():
            with torch.no_grad():
                return layer(x, x, training=False, **kw)

        return Step(run)

    params = [w.value for w in layer.trainable_weights]
    xg = x.detach().clone().requires_grad_(True)

    def run():
        for p in (xg, *params):
            p.grad = None  # fresh gradients each call, as an optimizer's zero_grad does
        out = layer(xg, xg, training=True, **kw)
        _main_output(out, kw).sum().backward()
        return out

    return Step(run)


def forward_outputs(step_result, call_kwargs, mode):
    """The layer output(s) of a step's result, as numpy: (output, scores or None)."""
    if mode == "fwdbwd":
        if BACKEND == "tensorflow":
            step_result = step_result[0]
        elif BACKEND == "jax":
            step_result = step_result[0][1]
    if call_kwargs.get("return_attention_scores"):
        return to_numpy(step_result[0]), to_numpy(step_result[1])
    return to_numpy(step_result), None


def matmul_fn(n, dtype="float32"):
    """A zero-argument function running one n x n matmul in `dtype` on this backend."""
    rng = np.random.default_rng(1)
    a_np = rng.standard_normal((n, n), dtype=np.float32)
    b_np = rng.standard_normal((n, n), dtype=np.float32)
    if BACKEND == "jax":
        import jax

        a, b = (jax.numpy.asarray(m, dtype=dtype) for m in (a_np, b_np))
        mm = jax.jit(jax.numpy.matmul)
        return lambda: mm(a, b).block_until_ready()
    if BACKEND == "torch":
        import torch

        a, b = (torch.from_numpy(m).to(getattr(torch, dtype)) for m in (a_np, b_np))
        return lambda: torch.matmul(a, b)
    import tensorflow as tf

    a, b = (tf.cast(tf.constant(m), dtype) for m in (a_np, b_np))
    return lambda: tf.linalg.matmul(a, b)
