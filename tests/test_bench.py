"""The benchmarks' harnesses: the decode steps they time are real decode steps, the
window benchmark times the layers users build, and results record the machine."""

import json

import keras
import numpy as np
from helpers import to_numpy

import pygqa
from benchmarks import decode, window


def test_decode_step_returns_one_finite_position_per_sequence():
    layer = pygqa.GroupQueryAttention(decode.HEAD_DIM, 8, 2, seed=3)
    step = decode.decode_step(layer, batch=2, length=8)
    output = to_numpy(step.run())
    assert output.shape == (2, 1, decode.D_MODEL)
    assert np.isfinite(output).all()


def test_run_decode_reports_both_layouts(tmp_path):
    rows = decode.run_decode(lengths=(16,), batch=1, rounds=1, out=str(tmp_path))
    (row,) = rows
    assert row["cache_ratio"] == 4.0  # 8 vs 2 key/value heads
    assert row["gqa_cache_mib"] * 2**20 == 2 * 1 * 16 * 2 * decode.HEAD_DIM * 4
    assert row["gqa_ms"] > 0 and row["mha_ms"] > 0 and row["time_ratio"] > 0
    saved = json.loads((tmp_path / "decode.json").read_text())
    assert saved["rows"] == rows
    assert "| 16 |" in (tmp_path / "decode.md").read_text()


def test_every_decode_variant_gets_its_own_table(tmp_path):
    # A cache shorter than the window could wrap under a tensor index: the layer
    # refuses it, so the shortest length is the window.
    length = decode.WINDOW + 8
    rows = decode.run_decode(lengths=(length,), batch=1, rounds=1, out=str(tmp_path),
                             variants=tuple(decode.VARIANTS))
    assert [row["variant"] for row in rows] == list(decode.VARIANTS)
    assert [row["slots"] for row in rows] == [length, length, length, decode.WINDOW]
    text = (tmp_path / "decode.md").read_text()
    assert text.count("\n## ") == len(decode.VARIANTS)
    assert f"rolling cache of {decode.WINDOW} slots" in text


def test_a_rolling_decode_step_matches_the_step_over_a_full_cache():
    # Position 20 with window 8: the rolling cache's 8 slots hold positions 13-20,
    # which the full cache holds at slots 13-20; both steps then see the same keys.
    length, slots = 21, 8
    full_layer, rolling_layer = (pygqa.GroupQueryAttention(decode.HEAD_DIM, 8, 2, seed=2,
                                                           sliding_window=slots)
                                 for _ in range(2))
    full = decode.decode_step(full_layer, batch=1, length=length)
    rolling = decode.decode_step(rolling_layer, batch=1, length=length, slots=slots)
    rolling_layer.set_weights(full_layer.get_weights())
    held = np.random.default_rng(0).standard_normal((1, 2, length, 2, decode.HEAD_DIM))
    x = np.random.default_rng(1).standard_normal((1, 1, decode.D_MODEL))
    positions = np.arange(length - slots, length)
    rolled = np.zeros((1, 2, slots, 2, decode.HEAD_DIM))
    rolled[:, :, positions % slots] = held[:, :, positions]
    index = length - 1
    expected, _ = full_layer(keras.ops.convert_to_tensor(x, "float32"),
                             cache=keras.ops.convert_to_tensor(held, "float32"),
                             cache_update_index=index, use_causal_mask=True)
    got, _ = rolling_layer(keras.ops.convert_to_tensor(x, "float32"),
                           cache=keras.ops.convert_to_tensor(rolled, "float32"),
                           cache_update_index=index, use_causal_mask=True)
    np.testing.assert_allclose(to_numpy(got), to_numpy(expected), atol=1e-5)
    assert to_numpy(full.run()).shape == to_numpy(rolling.run()).shape == (1, 1, decode.D_MODEL)


def test_the_window_benchmark_times_both_layers_on_the_same_weights():
    record = window.run([64], 16, rounds=1, modes=("fwd",))
    (row,) = record["rows"]
    assert row["mode"] == "fwd" and row["length"] == 64
    assert row["parity"] < 1e-5  # the same weights, the same window
    assert row["keras_ms"] > 0 and row["pygqa_ms"] > 0
    assert row["path"] == window.chosen_path(64, 16)
    text = window.markdown({record["backend"]: record})
    assert f"| {record['backend']} | 64 | fwd | {row['path']} |" in text


def test_cache_bytes_formula_matches_a_real_cache():
    layer = pygqa.GroupQueryAttention(decode.HEAD_DIM, 8, 2)
    cache = layer.empty_cache(3, 40)
    assert to_numpy(cache).nbytes == decode.cache_bytes(3, 40, 2)


def test_cpu_info_reads_model_extensions_and_caches(tmp_path):
    from pygqa.bench import machine

    (tmp_path / "cpuinfo").write_text(
        "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 fma avx512f avx512_bf16\n"
    )
    caches = [(1, "Data", "48K"), (1, "Instruction", "32K"),
              (2, "Unified", "1024K"), (3, "Unified", "32768K")]
    for index, (level, kind, size) in enumerate(caches):
        folder = tmp_path / "cache" / f"index{index}"
        folder.mkdir(parents=True)
        for name, text in (("level", level), ("type", kind), ("size", size)):
            (folder / name).write_text(f"{text}\n")
    info = machine.cpu_info(str(tmp_path / "cpuinfo"), str(tmp_path / "cache"))
    assert info["model"] == "Test CPU 9000"
    assert info["extensions"] == ["AVX2", "FMA", "AVX-512", "AVX512_BF16"]
    assert info["has_amx"] is False
    assert info["caches"] == {"L1d": "48K", "L2": "1024K", "L3": "32768K"}
    text = machine.caption({"cpu": info, "libraries": {}})
    assert "Test CPU 9000" in text and "AVX512_BF16 (no AMX)" in text and "L3 32768K" in text


def test_results_record_the_cpu_and_ratio_spreads(tmp_path):
    import keras

    from pygqa.bench import run_suite
    from pygqa.bench.shapes import Shape

    rows = run_suite(shapes=[Shape("D", 1, 16)], rounds=3, memory_check=False,
                     out=str(tmp_path), progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    cpu = saved["meta"]["machine"]["cpu"]
    assert cpu["logical_cpus"] >= 1 and cpu["model"]
    libraries = saved["meta"]["machine"]["libraries"]
    assert libraries["numpy_blas"]
    expected = {"tensorflow": "tf_onednn", "torch": "torch_onednn", "jax": "jaxlib"}
    assert libraries[expected[keras.backend.backend()]]
    for row in rows:
        low, high = row["ratio_spread"]
        assert low <= row["ratio"] <= high
    table = (tmp_path / "results.md").read_text()
    assert f"Measured on: {cpu['model']}" in table
    assert f"({rows[1]['ratio_spread'][0]:.2f}-" in table


def test_block_size_follows_the_last_level_cache():
    from pygqa.kernels import blockwise

    assert blockwise.cache_block_elements(32 << 20) == 1 << 21  # a quarter of 32 MiB, float32
    assert blockwise.cache_block_elements(1 << 20) == 1 << 20  # clamped below
    assert blockwise.cache_block_elements(1 << 30) == 1 << 22  # and above
    plan = blockwise.plan_blocks(1, 2048, 2048, 8, False, block_elements=1 << 21)
    assert plan.rows == 128 and plan.num_blocks == 16
    assert blockwise.plan_blocks(1, 2048, 2048, 8, False).rows == 256  # the default is unchanged


if keras.backend.backend() == "torch":  # the floor is written in torch calls

    def test_torch_floor_computes_the_layers_function_and_reports_ratios(tmp_path):
        from benchmarks import floor
        from pygqa.bench.shapes import Shape

        rows = floor.run([Shape("T", 2, 32), Shape("Tc", 1, 24, causal=True)], rounds=2)
        assert [(r["shape"], r["mode"]) for r in rows] == [
            ("T (2x32)", "fwd"), ("T (2x32)", "fwdbwd"),
            ("Tc (1x24 causal)", "fwd"), ("Tc (1x24 causal)", "fwdbwd"),
        ]
        for row in rows:
            assert row["parity"] < 1e-5, row  # the same function with the same weights
            assert row["ratio"] > 0 and row["spread"][0] <= row["ratio"] <= row["spread"][1]
        text = floor.markdown(rows, 2)
        assert "| T (2x32) | fwdbwd | 2 |" in text and "Measured on: " in text


def test_profile_classifies_ops_by_what_they_compute_under_either_kernel_library():
    from benchmarks import profile

    sizes = {"logits": (256, 96), "key": (96, 64)}
    # Eigen's names (oneDNN off) and oneDNN's (on) for the same computations.
    for product in ("BatchMatMulV2", "_MklBatchMatMulV2", "_MklNativeBatchMatMulV2",
                    "_MklFusedBatchMatMulV2", "MatMul", "_MklMatMul", "Einsum", "_MklEinsum"):
        assert profile._role(product, (1, 2, 256, 96), sizes) == "logits-sized products"
        assert profile._role(product, (1, 2, 96, 256), sizes) == "logits-sized products"
        assert profile._role(product, (1, 2, 64, 96), sizes) == "key-sized products"
        assert profile._role(product, (1, 2, 256, 64), sizes) == "output-sized products"
    for part in ("Softmax", "_MklSoftmax", "Exp", "Max", "Sum", "Mul", "_MklMul"):
        for shape in ((1, 2, 256, 96), (1, 2, 256, 1), (1, 2, 1, 256)):
            assert profile._role(part, shape, sizes) == "softmax and its backward", (part, shape)
    assert profile._role("_MklTranspose", (1, 2, 256, 96), sizes) == "layout and loop"
    assert profile._role("Sum", (1, 2, 64, 64), sizes) == "layout and loop"


if keras.backend.backend() == "tensorflow":  # the profile traces TensorFlow's kernel

    def test_profile_attributes_the_kernels_traced_time_to_its_parts():
        from benchmarks import profile
        from pygqa.bench.shapes import Shape

        for products in ("query", "key"):
            result = profile.profile_shape(Shape("T", 1, 96), products=products, reps=1)
            roles = result["roles"]
            assert set(roles) == set(profile.ROLES)
            assert abs(sum(roles.values()) - result["traced_ms"]) < 1e-6
            # Every product of this call is one of the three product roles.
            assert roles["logits-sized products"] > 0 and roles["key-sized products"] > 0
            assert roles["output-sized products"] > 0 and roles["softmax and its backward"] > 0
            assert result["products"] == ("KeyMajorProducts" if products == "key"
                                          else "QueryMajorProducts")
            assert "| softmax and its backward |" in profile.markdown(result)


def test_the_generation_benchmark_times_the_same_tokens_from_both_models(monkeypatch):
    """benchmarks/generate.py: both models write the same greedy tokens, and each
    phase's rows hold both implementations' times."""
    from benchmarks import generate

    monkeypatch.setitem(generate.MODEL, "hidden_dim", 32)
    monkeypatch.setitem(generate.MODEL, "intermediate_dim", 48)
    monkeypatch.setitem(generate.MODEL, "num_query_heads", 4)
    record = generate.run([2], prompt=6, new=3, rounds=1, memory=False)
    assert [(r["batch"], r["phase"]) for r in record["rows"]] == [(2, "generate"),
                                                                  (2, "prefill")]
    for row in record["rows"]:
        assert row["same_tokens"], row
        assert row["pygqa_s"] > 0 and row["keras_hub_s"] > 0
    generated = record["rows"][0]
    assert generated["pygqa_tokens_per_s"] == 2 * 3 / generated["pygqa_s"]
    assert "| 2 | generate |" in generate.markdown({"any": record})


def test_the_float64_reference_is_the_keras_layers_function():
    from pygqa.bench import backends, impls, reference

    layer = impls.build_layers(["keras_gqa"])["keras_gqa"]
    x = backends.make_input(2, 24, impls.D_MODEL)
    for causal in (False, True):
        expected = reference.gqa_forward(impls.gqa_weights(), backends.to_numpy(x), causal)
        got = backends.to_numpy(layer(x, x, use_causal_mask=causal))
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * np.abs(expected).max())
    plain = reference.gqa_forward(impls.gqa_weights(), backends.to_numpy(x))
    assert np.abs(plain - expected).max() > 1e-2 * np.abs(plain).max()  # the mask matters


def test_a_half_precision_run_reports_accuracy_against_float64_and_both_rooflines(tmp_path):
    from pygqa.bench import run_suite
    from pygqa.bench.shapes import Shape

    rows = run_suite(shapes=[Shape("D", 1, 16, causal=True)], rounds=1, memory_check=False,
                     out=str(tmp_path), progress=False, policy="mixed_bfloat16")
    meta = json.loads((tmp_path / "results.json").read_text())["meta"]
    assert meta["policy"] == "mixed_bfloat16" and meta["compute_dtype"] == "bfloat16"
    assert meta["gemm_gflops"] > 0 and meta["gemm_gflops_bfloat16"] > 0
    assert meta["roofline_gflops"] == meta["gemm_gflops_bfloat16"]
    for row in rows:
        # bfloat16 keeps 8 bits of mantissa: errors of ~1e-3..1e-2, never float32's 1e-7.
        assert 1e-4 < row["error_f64"] < 5e-2, row
    pygqa_error = next(r["error_f64"] for r in rows if r["impl"] == "pygqa")
    keras_error = next(r["error_f64"] for r in rows if r["impl"] == "keras_gqa")
    assert rows[0]["parity_ok"] == (pygqa_error <= 1.25 * keras_error)
    assert "mixed_bfloat16" in (tmp_path / "results.md").read_text()


def test_the_gated_benchmark_compares_the_gated_layers_with_the_same_weights(tmp_path):
    from pygqa.bench import backends, impls, reference, run_suite
    from pygqa.bench.shapes import Shape

    layers = impls.build_layers(["pygqa", "keras_gqa"], gate=True)
    x = backends.make_input(1, 12, impls.D_MODEL)
    expected = reference.gqa_forward(impls.gqa_weights(gate=True), backends.to_numpy(x))
    ungated = reference.gqa_forward(impls.gqa_weights(), backends.to_numpy(x))
    assert np.abs(expected - ungated).max() > 0.1 * np.abs(ungated).max()  # the gate acts
    for layer in layers.values():
        assert layer.use_gate
        got = backends.to_numpy(layer(x, x))
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * np.abs(expected).max())
    rows = run_suite(shapes=[Shape("D", 1, 16)], rounds=1, memory_check=False,
                     out=str(tmp_path), progress=False, gate=True)
    assert {r["impl"] for r in rows} == {"pygqa", "keras_gqa"}
    assert all(r["parity_ok"] for r in rows)
    assert "gated layers" in (tmp_path / "results.md").read_text()
