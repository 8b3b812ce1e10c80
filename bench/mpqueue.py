#!/usr/bin/python3
"""Baseline for `mcpcore-bench ring`: Python multiprocessing.Queue.

Usage: mpqueue.py SIZE COUNT -- prints messages per second (one float).
A child process puts COUNT bytes objects of SIZE bytes; the parent gets
them all; the clock runs from the first put to the last get.
"""
import multiprocessing as mp
import sys
import time


def producer(q, size, count, start):
    payload = b"x" * size
    start.value = time.monotonic()
    for _ in range(count):
        q.put(payload)


def main():
    size, count = int(sys.argv[1]), int(sys.argv[2])
    q = mp.Queue(maxsize=65536)
    start = mp.Value("d", 0.0)
    p = mp.Process(target=producer, args=(q, size, count, start))
    p.start()
    for _ in range(count):
        q.get()
    end = time.monotonic()
    p.join()
    print(f"{count / (end - start.value):.0f}")


if __name__ == "__main__":
    main()
