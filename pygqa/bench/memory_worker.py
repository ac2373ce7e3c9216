"""The child side of `memory.measure_peak`: measure one call, print a JSON line.

Run as `python -m pygqa.bench.memory_worker SPEC_JSON`; see `pygqa.bench.memory`.
"""

import ctypes
import gc
import json
import sys
import threading
import time

MIB = 2**20


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _rss():
    return _status_kib("VmRSS") * 1024


class _PeakWatcher:
    """Peak RSS from a point on: the kernel's counter, or a polling thread."""

    def __init__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self._thread = None
        except OSError:
            self._peak, self._stop = _rss(), threading.Event()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()

    def _poll(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss())
            time.sleep(0.001)

    def peak(self):
        if self._thread is None:
            return _status_kib("VmHWM") * 1024
        self._stop.set()
        self._thread.join()
        return max(self._peak, _rss())


def peak_of_run(step):
    """(peak, baseline) RSS bytes of one `step.run()`, the baseline taken after
    freeing what earlier (compiling) runs left behind."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass  # not glibc: freed memory may stay counted in the baseline
    baseline = _rss()
    watcher = _PeakWatcher()
    step.run()
    return watcher.peak(), baseline


def _worker(spec):
    """Runs in the child: measure one call and print a JSON line."""
    from pygqa.bench import backends, impls
    from pygqa.bench.shapes import D_MODEL, Shape

    shape = Shape("m", spec["batch"], spec["length"], spec["scores"], spec["causal"])
    layer = impls.build_layers([spec["impl"]], stand_in=spec["stand_in"],
                               policy=spec.get("policy", "float32"),
                               gate=spec.get("gate", False))[spec["impl"]]
    small = backends.make_input(1, min(128, shape.length), D_MODEL)
    backends.make_step(layer, small, spec["mode"], shape.call_kwargs).run()
    x = backends.make_input(shape.batch, shape.length, D_MODEL)
    step = backends.make_step(layer, x, spec["mode"], shape.call_kwargs)
    step.prepare()
    del small
    peak, baseline = peak_of_run(step)
    print(json.dumps({"peak_mib": (peak - baseline) / MIB, "baseline_mib": baseline / MIB}))


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
