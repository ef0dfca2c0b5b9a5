"""Loaded (as sitecustomize, through PYTHONPATH) by a main.py run under libfaketime with its
monotonic clock left alone (test_telegram_rules.skewed). libfaketime 0.9.10 then answers EINVAL
to clock_nanosleep on the monotonic clock with an absolute time, which Python's time.sleep uses;
so time.sleep waits in select() instead, a relative wait libfaketime leaves as it is."""

import select
import time


def _sleep(seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep
