"""The development benchmarks: kernels against their floors, profiles, windows,
decoding, generation and GPUs. Run from the repository root, one backend per
process: `KERAS_BACKEND=jax python -m benchmarks.decode`.

They live beside the package, not in it: a user of the layer gets the small
`pygqa bench` (pygqa against Keras's layers on their machine, `pygqa.bench`);
these modules build on it and write the tables under `benchmarks/results/`.
"""
