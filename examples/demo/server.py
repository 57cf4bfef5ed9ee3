#!/usr/bin/env python3
"""A Python app server for tollgate-demo (examples/demo/demo.c).

It speaks the demo's line protocol on stdin/stdout and limits organization
org-123 to the FREE plan (100 requests per hour, GCRA), exactly as the C
server does, so C, Python and Node servers behind one balancer share one
counter when they share a Redis:

    balancer -> server   CHECK <key> | RESET <key>
    server -> balancer   READY <pid> (once), then per request
                         ALLOW|DENY <remaining> <reset_after_ms> <retry_after_ms>
                         OK | ERROR <code name> <message>

    server.py [--store URL]       (no URL: the in-process memory store)
"""

from __future__ import annotations

import os
import sys

import tollgate

PLAN = tollgate.Policy(100, "1h")  # FREE: GCRA, burst = limit


def one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str]) -> int:
    url = None
    if len(argv) == 2 and argv[0] == "--store":
        url = argv[1]
    elif argv:
        print("usage: server.py [--store URL]", file=sys.stderr)
        return 2
    out = sys.stdout
    try:
        limiter = tollgate.Limiter(url)
    except tollgate.Error as e:
        out.write(f"ERROR {e.code} {one_line(str(e))}\n")
        out.flush()
        return 1
    out.write(f"READY {os.getpid()}\n")
    out.flush()
    with limiter:
        for raw in sys.stdin:
            line = raw.rstrip("\r\n")
            verb, _, key = line.partition(" ")
            try:
                if verb == "RESET" and key:
                    limiter.reset(key)
                    out.write("OK\n")
                elif verb == "CHECK" and key:
                    d = limiter.check(key, PLAN)
                    out.write(
                        f"{'ALLOW' if d.allowed else 'DENY'} {d.remaining} "
                        f"{d.reset_after_ms} {d.retry_after_ms}\n"
                    )
                else:
                    out.write("ERROR RL_E_INVALID_ARG bad request line\n")
            except tollgate.Error as e:
                out.write(f"ERROR {e.code} {one_line(str(e))}\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
