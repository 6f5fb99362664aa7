"""leak.py: a Python program that leaks through a C library (tests/python/frames.sh): five
blocks from malloc through ctypes, never freed, and a list that stays reachable. The leak
report must name the Python function and line that leaked."""
import ctypes

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p


def lose(n):
    for _ in range(n):
        libc.malloc(1000)  # LEAKED


cache = [bytearray(2000) for _ in range(10)]
lose(5)
