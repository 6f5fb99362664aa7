"""normalize.py KIND < OUTPUT: tally's output without what changes from run to run or machine
to machine, for the golden files of tests/tools/tally.sh.

text: the header's program and pid and the run time; the size-class table (it counts what the
C library and the dynamic loader allocate too) is checked for consistency elsewhere.
json: the same, plus site ids, module paths and offsets (build- and library-version dependent),
and source paths reduced to file names (a VPATH build compiles ../tests/...)."""
import json
import os
import re
import sys

kind = sys.argv[1]
data = sys.stdin.read()
if kind == "text":
    out = []
    for line in data.splitlines():
        if line.startswith("Size classes"):
            break
        line = re.sub(r"^(tally \w+): .* \(pid \d+\), (.*) after [0-9.]+ s$",
                      r"\1: PROGRAM (pid PID), \2 after T s", line)
        line = re.sub(r"^  (old|new) .*/([^/ ]+) \(pid \d+\), (.*) after [0-9.]+ s$",
                      r"  \1 \2 (pid PID), \3 after T s", line)
        out.append(line)
    while out and out[-1] == "":
        out.pop()
    print("\n".join(out))
else:
    j = json.loads(data)
    for side in ("dump", "old", "new"):
        if side in j:
            j[side]["program"] = os.path.basename(j[side]["program"] or "")
            j[side]["pid"] = 0
            j[side]["duration_ns"] = 0
            if j[side].get("max_rss_bytes", 0) > 0:  # varies by run; present and positive
                j[side]["max_rss_bytes"] = "RSS"
            if 0 < j[side].get("meta_resident_bytes", 0) < (256 << 20):  # the same, and small
                j[side]["meta_resident_bytes"] = "TABLES"
            if "path" in j[side]:
                j[side]["path"] = os.path.basename(j[side]["path"])
    j.pop("classes", None)
    j.pop("arena", None)

    def frames(fs):
        for f in fs:
            f["module"] = os.path.basename(f["module"]) if f["module"] else None
            f["file"] = os.path.basename(f["file"]) if f["file"] else None
            f["offset"] = None
    for s in j.get("sites", []):
        s["id"] = 0
        frames(s["frames"])
    for s in j.get("leaks") or []:
        s["site"] = 0
        frames(s["frames"])
    print(json.dumps(j, indent=1, sort_keys=True))
