"""Gradients of a scalar loss with respect to a layer's weights and its input, per backend."""

import keras
import numpy as np


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def loss_gradients(layer, x, **call_kwargs):
    """d/d(weights, x) of sum(output**2), as a list of numpy arrays (weights first)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def loss(weights, x):
            out, _ = layer.stateless_call(weights, [v.value for v in layer.non_trainable_variables],
                                          x, **call_kwargs)
            return (_first(out) ** 2).sum()

        weights = [v.value for v in layer.trainable_variables]
        grad_weights, grad_x = jax.grad(loss, argnums=(0, 1))(weights, x)
        return [np.asarray(g) for g in (*grad_weights, grad_x)]
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(_first(layer(x, **call_kwargs)) ** 2)
        return [g.numpy() for g in tape.gradient(loss, [*layer.trainable_variables, x])]
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        loss = (_first(layer(x, **call_kwargs)) ** 2).sum()
        targets = [v.value for v in layer.trainable_variables] + [x]
        return [g.numpy() for g in torch.autograd.grad(loss, targets)]
    raise NotImplementedError(backend)


def vjp(function, args, cotangent):
    """Gradients of sum(function(*args) * cotangent) with respect to every arg (numpy)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        _, pullback = jax.vjp(function, *args)
        return [np.asarray(g) for g in pullback(cotangent)]
    if backend == "tensorflow":
        import tensorflow as tf

        args = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            for a in args:
                tape.watch(a)
            out = function(*args)
        return [g.numpy() for g in tape.gradient(out, args, output_gradients=cotangent)]
    if backend == "torch":
        import torch

        args = [torch.tensor(a, requires_grad=True) for a in args]
        out = function(*args)
        return [g.numpy() for g in torch.autograd.grad(out, args, torch.tensor(cotangent))]
    raise NotImplementedError(backend)
