"""The Python process of the soak test (tests/soak/soak.py); the same loop
as soak_worker.c, with the tollgate package as a user installs it.

    python soak_worker.py URL PREFIX POLICY SLOT_S TIMEOUT_MS SECONDS OUT
"""

import json
import sys
import time
from collections import Counter

import tollgate


def main() -> int:
    if len(sys.argv) != 8:
        print(__doc__, file=sys.stderr)
        return 2
    url, prefix, text, slot_s, timeout_ms, seconds, out = sys.argv[1:]
    slot_s_i, timeout = int(slot_s), int(timeout_ms)
    limiter = tollgate.Limiter(
        url, failure_mode="closed", timeout_ms=timeout, deny_cache=False
    )
    policy = tollgate.Policy.parse(text)
    admitted: Counter[int] = Counter()
    calls = errors = overruns = 0
    longest_ms = 0.0
    start = time.monotonic()
    while time.monotonic() - start < float(seconds):
        slot = int(time.time()) // slot_s_i
        t0 = time.monotonic()
        try:
            d = limiter.check(f"{prefix}:{slot}", policy)
        except tollgate.Error:
            d = None
        took_ms = (time.monotonic() - t0) * 1000.0
        calls += 1
        longest_ms = max(longest_ms, took_ms)
        if took_ms > timeout + 250.0:
            overruns += 1
        if d is None:
            errors += 1
        elif d.allowed and d.source == "store":
            admitted[slot] += 1
    limiter.close()
    with open(out, "w") as f:
        json.dump(
            {
                "lang": "python",
                "calls": calls,
                "errors": errors,
                "overruns": overruns,
                "longest_ms": round(longest_ms, 1),
                "admitted": {str(k): v for k, v in sorted(admitted.items())},
            },
            f,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
