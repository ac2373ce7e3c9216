"""Results on disk: a Markdown table, a PNG plot and the raw rows as JSON.

`pygqa bench --render DIR` re-renders DIR's table and plot from its results.json.
"""

import json
import os

from pygqa.bench.impls import IMPLS, LABELS
from pygqa.bench.machine import caption
from pygqa.bench.shapes import D_MODEL, HEAD_DIM, KV_HEADS, QUERY_HEADS, SHAPES

MODE_LABELS = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}


def write_all(rows, meta, out):
    """Write results.md, results.png and results.json into folder `out`."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(rows, meta))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    plot(rows, meta, os.path.join(out, "results.png"))


def render(out):
    """Rewrite results.md and results.png of folder `out` from its results.json."""
    with open(os.path.join(out, "results.json")) as f:
        saved = json.load(f)
    write_all(saved["rows"], saved["meta"], out)


def summary(root):
    """Markdown of the paired ratios (keras GQA / pygqa time, pygqa / keras GQA memory)
    of every `root/<run>/results.json` (a run: one backend under one policy), one table
    per policy."""
    runs = {}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "results.json")
        if os.path.exists(path):
            with open(path) as f:
                runs[name] = json.load(f)
    lines = [
        "Per run (backend and policy): keras GQA time / pygqa time for forward and",
        "forward+backward (median of per-round ratios, with the smallest and largest round",
        "in brackets; > 1: pygqa faster), and pygqa / keras GQA peak memory of",
        "forward+backward (< 1: pygqa uses less).",
    ]
    policies = {}
    for name, run in runs.items():
        kind = run["meta"].get("policy", "float32") + (", gated" if run["meta"].get("gate") else "")
        policies.setdefault(kind, []).append(name)
    for policy, names in policies.items():
        lines += ["", f"### {policy}", ""] + _summary_table({n: runs[n] for n in names})
    lines += [
        "",
        "| run | date | load avg | GEMM GFLOP/s float32 / bfloat16 | rounds | pygqa commit "
        "| CPU and math library |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        m = run["meta"]
        lines.append(
            f"| {name} | {m['date']} | {m.get('load_start')} / {m.get('load_end')} | "
            f"{m['gemm_gflops']:.0f} / {_fmt(m.get('gemm_gflops_bfloat16'), '.0f')} | "
            f"{m.get('rounds')} | {m.get('commit')} | {caption(m.get('machine'))} |"
        )
    return "\n".join(lines) + "\n"


def _summary_table(runs):
    head = ["shape"] + [f"{r['meta']['backend']} {m}" for r in runs.values()
                        for m in ("fwd", "fwd+bwd", "mem")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cases = {name: _cases(run["rows"]) for name, run in runs.items()}
    labels = {}  # shape name -> label, in first-seen order
    for case_list in cases.values():
        for (shape, _), case in case_list.items():
            labels.setdefault(shape, _shape_label(next(iter(case.values()))))
    for shape, label in labels.items():
        cells = []
        for name in runs:
            fwd = cases[name].get((shape, "fwd"), {}).get("keras_gqa")
            bwd = cases[name].get((shape, "fwdbwd"), {})
            mine, ref = (
                bwd.get("pygqa", {}).get("peak_mib"),
                bwd.get("keras_gqa", {}).get("peak_mib"),
            )
            cells += [
                _ratio_cell(fwd),
                _ratio_cell(bwd.get("keras_gqa")),
                f"{mine / ref:.2f}" if mine is not None and ref else "–",
            ]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return lines


def _ratio_cell(row):
    """"1.23x (1.10-1.31)": the median paired ratio and its per-round range."""
    if not row:
        return "–"
    cell = _fmt(row["ratio"], ".2f") + "x"
    spread = row.get("ratio_spread")
    if spread:
        cell += f" ({spread[0]:.2f}-{spread[1]:.2f})"
    return cell


def _fmt(value, spec, missing="–"):
    return missing if value is None else format(value, spec)


def _shape_label(row):
    shape = SHAPES.get(row["shape"])
    name = (
        shape.label
        if shape and shape.batch == row["batch"]
        else f"{row['shape']} ({row['batch']}x{row['length']})"
    )
    return name


def _cases(rows, kind="time"):
    """{(shape, mode): {impl: row}} in first-seen order."""
    cases = {}
    for row in rows:
        if row["kind"] == kind:
            cases.setdefault((row["shape"], row["mode"]), {})[row["impl"]] = row
    return cases


def markdown(rows, meta):
    """The results as Markdown: time table, memory table, memory-scaling table."""
    impls = [i for i in IMPLS if any(r["impl"] == i for r in rows if r["kind"] == "time")]
    others = [i for i in impls if i != "pygqa"]
    policy = meta.get("policy", "float32")
    lines = [
        f"# pygqa benchmark: {meta['backend']} backend, {policy}"
        + (", gated layers (use_gate=True)" if meta.get("gate") else ""),
        "",
        f"keras {meta['keras']}, pygqa {meta['pygqa']}, Python {meta['python']}, "
        f"{meta['cpus']} CPUs, {meta['date']}. Self-attention under the `{policy}` dtype "
        f"policy, d_model {D_MODEL}, "
        f"head_dim {HEAD_DIM}, {QUERY_HEADS} query / {KV_HEADS} key-value heads; "
        f"Up to {meta['rounds']} interleaved rounds per case (column `rounds`). "
        f"pygqa at commit {meta.get('commit')}. Load average (1 min) at start / end: "
        f"{meta.get('load_start')} / {meta.get('load_end')}. "
        f"GEMM rooflines (2048x2048 matmul, best of 10): {meta['gemm_gflops']:.0f} GFLOP/s "
        f"in float32, {_fmt(meta.get('gemm_gflops_bfloat16'), '.0f')} in bfloat16; `%GEMM` "
        f"is taken against the {meta.get('compute_dtype', 'float32')} one.",
        "",
        f"Measured on: {caption(meta.get('machine'))}.",
        "",
        "## Time",
        "",
        "Median ms per call; `x/pygqa` = median over rounds of that implementation's time "
        "divided by pygqa's in the same round (> 1: pygqa is faster), with the smallest and "
        "largest round in brackets; `%GEMM` = the GQA "
        "layer's FLOPs / time as a fraction of the GEMM roofline; `error` = max |output - "
        "float64 reference| / max |reference| (the same weights and input in numpy float64).",
        "",
    ]
    head = ["shape", "mode", "rounds"] + [f"{LABELS[i]} ms" for i in impls]
    head += [f"{LABELS[i].split()[-1]}/pygqa" if i == "keras_mha" else "GQA/pygqa" for i in others]
    head += [f"{LABELS[i]} %GEMM" for i in impls]
    head += [f"{LABELS[i]} error" for i in impls]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (_, mode), case in _cases(rows).items():
        first = next(iter(case.values()))
        cells = [_shape_label(first), MODE_LABELS[mode], str(first["rounds"])]
        cells += [
            _fmt(case[i]["median_ms"], ".1f") + ("" if case[i]["parity_ok"] else " ✗")
            for i in impls
        ]
        cells += [_ratio_cell(case[i]) for i in others]
        cells += [_fmt(100 * case[i]["gemm_fraction"], ".0f") + "%" for i in impls]
        cells += [_fmt(case[i].get("error_f64"), ".1e") for i in impls]
        lines.append("| " + " | ".join(cells) + " |")
    if any(not r.get("parity_ok", True) for r in rows):
        rule = ("output differs from keras GQA by more than 1e-5 of its scale"
                if policy == "float32" else
                "error against float64 above 1.25x keras GQA's")
        lines += ["", f"✗: {rule} (see results.json)."]

    memory_cases = {
        k: c for k, c in _cases(rows).items() if k[1] == "fwdbwd" and "peak_mib" in c["pygqa"]
    }
    if memory_cases:
        lines += [
            "",
            "## Peak memory, forward+backward",
            "",
            "MiB of resident memory above the baseline (weights, input, compiled code), "
            "each measured in a fresh process; `pygqa/x` < 1: pygqa uses less.",
            "",
        ]
        head = (
            ["shape"]
            + [f"{LABELS[i]} MiB" for i in impls]
            + [f"pygqa/{LABELS[i].split()[-1]}" for i in others]
        )
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for case in memory_cases.values():
            cells = [_shape_label(case["pygqa"])]
            cells += [_fmt(case[i]["peak_mib"], ".0f", case[i]["memory_status"]) for i in impls]
            mine = case["pygqa"]["peak_mib"]
            for i in others:
                theirs = case[i]["peak_mib"]
                cells.append(f"{mine / theirs:.2f}" if mine is not None and theirs else "–")
            lines.append("| " + " | ".join(cells) + " |")

    scaling = [r for r in rows if r["kind"] == "scaling"]
    if scaling:
        lines += [
            "",
            "## Memory scaling: pygqa, forward+backward, batch 1",
            "",
            "| length | peak MiB | MiB per 1k positions |",
            "|---|---|---|",
        ]
        for r in scaling:
            per_k = None if r["peak_mib"] is None else r["peak_mib"] / (r["length"] / 1024)
            peak = _fmt(r["peak_mib"], ".0f", r["memory_status"])
            lines.append(f"| {r['length']} | {peak} | {_fmt(per_k, '.1f')} |")
    lines += ["", "![time and memory vs length](results.png)", ""]
    return "\n".join(lines)


def plot(rows, meta, path):
    """Forward+backward time and peak memory vs sequence length, one line per
    implementation (the plain shapes, labelled), and pygqa's memory scaling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    plain = [
        r
        for r in rows
        if r["kind"] == "time" and r["mode"] == "fwdbwd" and not (r["scores"] or r["causal"])
    ]
    scaling = [r for r in rows if r["kind"] == "scaling" and r["peak_mib"] is not None]
    failed = [r for r in rows if r["kind"] == "scaling" and r["peak_mib"] is None]
    panels = [("median_ms", "fwd+bwd time (ms)")] if plain else []
    if any(r.get("peak_mib") is not None for r in plain):
        panels.append(("peak_mib", "fwd+bwd peak memory (MiB above baseline)"))
    if not panels and not scaling:
        return
    fig, axes = plt.subplots(
        1, len(panels) + bool(scaling), figsize=(5.2 * (len(panels) + bool(scaling)), 4.2)
    )
    axes = list(axes) if hasattr(axes, "__len__") else [axes]
    for ax, (key, title) in zip(axes, panels, strict=False):
        for impl in IMPLS:
            pts = sorted(
                (
                    (r["length"], r[key], r)
                    for r in plain
                    if r["impl"] == impl and r.get(key) is not None
                ),
                key=lambda p: p[:2],
            )
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=LABELS[impl])
            if impl == "pygqa":
                for length, value, r in pts:
                    ax.annotate(
                        f"{r['shape']} b{r['batch']}",
                        (length, value),
                        textcoords="offset points",
                        xytext=(4, -10),
                        fontsize=7,
                    )
        ax.set(xscale="log", yscale="log", xlabel="sequence length", title=title)
        _plain_ticks(ax, NullFormatter, ScalarFormatter)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if scaling:
        ax = axes[-1]
        lengths = [r["length"] for r in scaling]
        peaks = [r["peak_mib"] for r in scaling]
        ax.plot(lengths, peaks, marker="o", label="pygqa GQA")
        ax.plot(
            lengths, [peaks[0] * n / lengths[0] for n in lengths], "k--", lw=0.8, label="linear"
        )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="sequence length (batch 1)",
            title="pygqa fwd+bwd peak memory (MiB)",
        )
        _plain_ticks(ax, NullFormatter, ScalarFormatter)
        for i, r in enumerate(failed):  # lengths that did not complete, named in the panel
            ax.text(
                0.03,
                0.72 - 0.07 * i,
                f"{r['length']}: {r['memory_status']}",
                fontsize=8,
                transform=ax.transAxes,
            )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"pygqa vs Keras, {meta['backend']} backend, {meta.get('policy', 'float32')}, "
        f"{meta.get('date')}\n"
        f"{caption(meta.get('machine'))}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plain_ticks(ax, null_formatter, scalar_formatter):
    """Log axes labelled 512, 1024, ... rather than 2^9, 2^10."""
    ax.set_xscale("log", base=2)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(scalar_formatter())
        axis.set_minor_formatter(null_formatter())
