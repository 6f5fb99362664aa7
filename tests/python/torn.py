"""torn.py: allocations taken while this thread's frame chain is broken on purpose
(tests/python/frames.sh). In the frame of the caller (suspended, so the interpreter leaves it
alone until it resumes) the `previous` link or the code object is pointed at unmapped memory,
at readable garbage or (previous) at the frame itself, for one allocation each, and put back:
the walker must end the Python part of those stacks there, and the program must go on as if
nothing happened. The offsets are the test's own knowledge of CPython 3.11-3.13's layout."""
import ctypes
import sys

# 3.11 only: on 3.12 the interpreter itself reads a suspended frame's fields and crashes.
LAYOUT = {(3, 11): (56, 8, 48, 32)}
cframe, frame_at, prev, code = LAYOUT[sys.version_info[:2]]
get_ts = ctypes.pythonapi.PyThreadState_Get
get_ts.restype = ctypes.c_void_p


def word(addr):
    return ctypes.c_uint64.from_address(addr).value


def callers_frame():
    ts = get_ts()
    f = word(word(ts + cframe) + frame_at) if cframe is not None else word(ts + frame_at)
    return word(f + prev)  # this function's caller


def broken_alloc(field, bad, size):
    mine = callers_frame()
    caller = word(mine + prev)
    slot = ctypes.c_uint64.from_address(caller + field)
    saved = slot.value
    slot.value = caller if bad == "self" else bad
    try:
        block = bytearray(size)  # BROKEN
    finally:
        slot.value = saved
    return block


def middle(field, bad, size):
    return broken_alloc(field, bad, size)


garbage = ctypes.create_string_buffer(b"\x41" * 4096)
keep = [
    middle(prev, 0xDEAD0000, 700001),               # unmapped
    middle(prev, ctypes.addressof(garbage), 700002),  # readable, but no frame
    middle(prev, "self", 700003),                   # a cycle
    middle(code, 0xDEAD0000, 700004),               # a code object that is not mapped
    middle(code, ctypes.addressof(garbage), 700005),  # one that is no code object
]
print("torn: ok", sum(len(b) for b in keep))
