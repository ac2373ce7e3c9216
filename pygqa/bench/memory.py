"""Peak memory of one layer call, measured in a fresh process.

Each measurement runs `python -m pygqa.bench.memory_worker` in a new process (same
KERAS_BACKEND), so that nothing else the suite allocated is counted. The worker:

1. import, build the layer and the input, warm the runtime with a small call;
2. compile the call at the target shape without running it (jax: ahead-of-time
   compile; tensorflow: trace; torch: nothing to compile), so that compiler memory
   is not counted;
3. `gc.collect()` and `malloc_trim(0)`, so that freed memory is returned to the OS;
   the resident set size (RSS) now is the baseline (weights, input, compiled code);
4. reset the kernel's peak-RSS counter (`/proc/self/clear_refs` <- 5), run the call
   once, read the peak (`VmHWM`). Where the counter cannot be reset, a thread polls
   RSS every millisecond instead.

The result is peak RSS above the baseline: the working memory of that call.
The parent watches the child and stops it past a memory limit or a timeout.
"""

import json
import os
import subprocess
import sys
import time

MIB = 2**20


def measure_peak(impl, shape, mode="fwdbwd", stand_in=False, limit_mib=8 * 1024, timeout_s=300,
                 policy="float32", gate=False):
    """Peak memory (MiB above baseline) of one call of `impl` at `shape`, in a subprocess.

    Returns {"peak_mib": float or None, "status": "ok" | "over limit" | "timeout" |
    "failed: ..."}. The child is killed when its RSS passes `limit_mib` (so that a
    quadratic-memory layer at a long length cannot exhaust a shared machine).
    """
    import psutil

    spec = {
        "impl": impl,
        "batch": shape.batch,
        "length": shape.length,
        "scores": shape.scores,
        "causal": shape.causal,
        "mode": mode,
        "stand_in": stand_in,
        "policy": policy,
        "gate": gate,
    }
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pygqa.bench.memory_worker", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    status, start = None, time.monotonic()
    child = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = child.memory_info().rss
        except psutil.NoSuchProcess:
            break
        if rss > limit_mib * MIB:
            status = f"over limit ({limit_mib / 1024:.0f} GiB RSS)"
        elif time.monotonic() - start > timeout_s:
            status = f"timeout ({timeout_s} s)"
        if status:
            proc.kill()
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    if status:
        return {"peak_mib": None, "status": status}
    if proc.returncode != 0:
        # The exception's own line ("ValueError: ..."), not Keras's argument dump after it.
        lines = [ln.strip() for ln in err.splitlines() if ln.strip()] or ["no message"]
        errors = [ln for ln in lines if ln.split(":")[0].endswith(("Error", "Exception"))]
        return {"peak_mib": None, "status": f"failed: {(errors or lines)[-1][:100]}"}
    result = json.loads(out.strip().splitlines()[-1])
    return {"peak_mib": result["peak_mib"], "status": "ok"}
