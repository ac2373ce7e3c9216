"""The benchmark's problem sizes, and how many FLOPs each one needs.

Every named shape is self-attention with the dimensions of issue 5:
d_model 512, head_dim 64, 8 query heads sharing 2 key/value heads.
"""

import dataclasses

D_MODEL = 512
HEAD_DIM = 64
QUERY_HEADS = 8
KV_HEADS = 2

MODES = ("fwd", "fwdbwd")  # forward only; forward + backward (gradients of inputs and weights)


@dataclasses.dataclass(frozen=True)
class Shape:
    """One benchmark case: batch size, sequence length and call options."""

    name: str
    batch: int
    length: int
    scores: bool = False  # return_attention_scores=True
    causal: bool = False  # use_causal_mask=True

    @property
    def label(self):
        extra = " scores" if self.scores else " causal" if self.causal else ""
        return f"{self.name} ({self.batch}x{self.length}{extra})"

    @property
    def call_kwargs(self):
        """Keyword arguments for the layer call (only the non-default ones)."""
        kwargs = {}
        if self.scores:
            kwargs["return_attention_scores"] = True
        if self.causal:
            kwargs["use_causal_mask"] = True
        return kwargs


SHAPES = {
    "A": Shape("A", 4, 512),
    "B": Shape("B", 1, 2048),
    "C": Shape("C", 1, 4096),
    "D": Shape("D", 8, 128),
    "E": Shape("E", 1, 2048, scores=True),
    "F": Shape("F", 1, 2048, causal=True),
}
QUICK_SHAPES = ("D", "A")

# Memory-scaling mode: pygqa only, forward+backward, batch 1.
SCALING_LENGTHS = (1024, 2048, 4096, 8192, 16384)
QUICK_SCALING_LENGTHS = (1024, 2048)


def parse_shapes(text):
    """`"A,B,C"` -> list of named shapes; raises ValueError naming unknown ones."""
    names = [n.strip().upper() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise ValueError(
            f"Received unknown shape names for `--shapes`: expected some of "
            f"{','.join(SHAPES)}. Received: {text!r}"
        )
    return [SHAPES[n] for n in names]


def parse_custom(text, name="custom"):
    """`"B,T"` -> a user-given self-attention shape of batch B and length T."""
    try:
        batch, length = (int(p) for p in text.split(","))
    except ValueError:
        batch = length = 0
    if batch <= 0 or length <= 0:
        raise ValueError(
            f"Received an invalid value for `--custom`: expected two positive integers "
            f"'BATCH,LENGTH'. Received: {text!r}"
        )
    return Shape(name, batch, length)


def parse_lengths(text):
    """`"1024,2048"` -> (1024, 2048)."""
    lengths = tuple(int(p) for p in text.split(",") if p.strip())
    if not lengths or min(lengths) <= 0:
        raise ValueError(f"Expected positive integer lengths. Received: {text!r}")
    return lengths


def attended_pairs(target_length, source_length, causal):
    """Number of (query, key) pairs that the mask keeps.

    The causal mask is top-left aligned: query i sees keys 0..i.
    """
    if not causal:
        return target_length * source_length
    return sum(min(i + 1, source_length) for i in range(target_length))


def layer_flops(shape, mode):
    """FLOPs of one call of the GQA layer at `shape`, counting multiply-adds as 2.

    Forward, with B batch, T = S length, m = d_model, u / v query / kv heads,
    h = head_dim and P the attended (query, key) pairs (T*S, or ~T*S/2 causal):

        projections  2*B*T*m*u*h (query) + 2 * 2*B*S*m*v*h (key, value)
                     + 2*B*T*u*h*m (output)
        attention    2*B*u*P*h (Q K^T) + 2*B*u*P*h (P V)   = 4*B*u*P*h

    Softmax, bias and masking are ignored (they are O(B*u*P), not *h).
    Forward+backward counts 3x forward (the backward of each matmul is two
    matmuls of the same size). The count is that of GQA's useful work, the
    same for every implementation, so the fraction of GEMM throughput compares
    like with like: MHA's wider K/V projections and any masked work that an
    implementation still computes count as lost efficiency.
    """
    b, t = shape.batch, shape.length
    m, u, v, h = D_MODEL, QUERY_HEADS, KV_HEADS, HEAD_DIM
    projections = 2 * b * t * m * u * h + 2 * 2 * b * t * m * v * h + 2 * b * t * u * h * m
    attention = 4 * b * u * attended_pairs(t, t, shape.causal) * h
    forward = projections + attention
    return forward if mode == "fwd" else 3 * forward
