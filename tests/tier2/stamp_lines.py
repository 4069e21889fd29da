#!/usr/bin/env python3
"""Copies stdin to stdout, each line prefixed with the seconds since start ("  12.34 | line").
Tier-2 tests pipe nvhv's output through it to time each boot stage inside the nested host."""
import sys
import time

start = time.monotonic()
for line in sys.stdin.buffer:
    sys.stdout.buffer.write(b"%7.2f | " % (time.monotonic() - start) + line)
    sys.stdout.buffer.flush()
