"""reusecheck.py NATIVE_JSON: every block reuse.py allocated in f<i> (100000 + 16 i + 1 bytes,
one allocation) is charged to f<i> (tests/python/frames.sh)."""
import json
import sys

ok, bad = 0, []
for s in json.load(open(sys.argv[1]))["sites"]:
    n = s["alloc_bytes"]
    if s["alloc_count"] < 1 or n < 100001 or (n - 100001) % 16 or (n - 100001) // 16 >= 60:
        continue
    want = "f%d" % ((n - 100001) // 16)
    got = [f["function"] for f in s["frames"] if f.get("python")][:1]
    if got == [want]:
        ok += 1
    else:
        bad.append("%d bytes: want %s, stack has %s" % (n, want, got))
print("reuse: %d blocks charged to their own function" % ok)
for b in bad:
    print("BAD", b)
sys.exit(0 if ok == 60 and not bad else 1)
