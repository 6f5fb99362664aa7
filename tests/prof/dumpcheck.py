"""dumpcheck.py - read tallymalloc dumps (docs/FORMAT.md, versions 1 to 3) for the tests.

A strict reader: an unknown record tag, a missing "end" line, a malformed field or a version
other than 1 or 2 raise DumpError. A Python frame (`py=CODE:LINE`) is the tuple
("py", file, name, line) in a stack; d["pycode"] maps code ids to their records. Compressed dumps (one zstd frame) go through the zstd command. Frames are attributed to the functions of one ELF file (the test
program) with `nm`, so the tests need no symbolizer of their own beyond binutils.
"""
import os
import subprocess


class DumpError(Exception):
    pass


TAGS = {"header", "totals", "module", "frame", "stack", "site", "class", "arena", "timeline",
        "block", "pycode", "error"}
# Site fields that the dump leaves out when they are 0 (FORMAT.md).
SITE_FIELDS = ("alloc_count", "alloc_bytes", "granted_bytes", "free_count", "free_bytes",
               "live_count", "live_bytes", "max_live_bytes", "peak_live_bytes", "temporary",
               "samples", "pinned_bytes")


def _value(v):
    if v == "-":
        return None
    if v.startswith("0x") and "," in v:
        return [int(x, 16) for x in v.split(",")]
    if v.startswith("0x"):
        return int(v, 16)
    if "," in v or ":" in v:
        out = {}
        for part in v.split(","):
            k, _, c = part.partition(":")
            out[int(k)] = int(c)
        return out
    try:
        return int(v)
    except ValueError:
        return v


def _decode(s):
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "%":
            out.append(int(s[i + 1:i + 3], 16))
            i += 3
        else:
            out += s[i].encode()
            i += 1
    return out.decode("utf-8", "replace")


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def text(path):
    """The dump's text: as is, or decompressed when it is a zstd frame (FORMAT.md)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:4] == ZSTD_MAGIC:
        r = subprocess.run(["zstd", "-dcq"], input=raw, capture_output=True)
        if r.returncode != 0:
            raise DumpError("%s: a broken zstd frame: %s" % (path, r.stderr.decode().strip()))
        raw = r.stdout
    return raw.decode("utf-8")


def parse(path):
    lines = text(path).split("\n")
    if not lines or lines[0] not in ("tally-dump 1", "tally-dump 2", "tally-dump 3"):
        raise DumpError("%s: not a version 1 to 3 tally dump (first line %r)" % (path, lines[:1]))
    if lines[-1] != "":
        raise DumpError("%s: no newline at the end" % path)
    lines = lines[1:-1]
    if not lines or lines[-1] != "end":
        raise DumpError("%s: no end line: truncated" % path)
    d = {t: [] for t in TAGS}
    for n, line in enumerate(lines[:-1], 2):
        tag, *fields = line.split(" ")
        if tag not in TAGS:
            raise DumpError("%s:%d: unknown record %r" % (path, n, tag))
        rec = {}
        for fld in fields:
            k, eq, v = fld.partition("=")
            if not eq:
                raise DumpError("%s:%d: field without '=': %r" % (path, n, fld))
            if k in ("path", "program", "file", "name") or (tag == "frame" and k == "py"):
                rec[k] = _decode(v)
            elif tag == "timeline" and k == "sites":  # site:live:allocated,...
                rec[k] = [tuple(int(x) for x in part.split(":")) for part in v.split(",")]
                if any(len(t) != 3 for t in rec[k]):
                    raise DumpError("%s:%d: sites is not site:live:allocated,..." % (path, n))
            else:
                rec[k] = _value(v)
        d[tag].append(rec)
    for one in ("header", "totals", "arena"):
        if len(d[one]) != 1:
            raise DumpError("%s: %d %s records" % (path, len(d[one]), one))
        d[one] = d[one][0]
    # Stacks: innermost frame node, then parents up to 0. Parents come before children.
    codes = {c["id"]: c for c in d["pycode"]}
    d["pycode"] = codes
    nodes = {}
    for k, fr in enumerate(d["frame"], 1):  # version 2 leaves the ids out: they count from 1
        fr.setdefault("id", k)
    for fr in d.pop("frame"):
        if "py" in fr:
            code, _, line = fr["py"].partition(":")
            if int(code) not in codes:
                raise DumpError("%s: frame %d names pycode %s, not defined" % (path, fr["id"], code))
            c = codes[int(code)]
            fr["ip"] = ("py", c["file"], c["name"], int(line))
        if fr["id"] in nodes or (fr["parent"] and fr["parent"] not in nodes):
            raise DumpError("%s: frame %d out of order" % (path, fr["id"]))
        nodes[fr["id"]] = (fr["parent"], fr["ip"])
    d["stacks"] = {}
    for site in d["site"]:  # version 2: the stack is in the site; seen as a stack of its id
        if "frame" in site and "stack" not in site:
            d["stack"].append({"id": site["id"], "frame": site.pop("frame"), "depth": site.pop("depth")})
            site["stack"] = site["id"]
    for st in d.pop("stack"):
        frames, node = [], st["frame"]
        while node:
            if node not in nodes:
                raise DumpError("%s: stack %d names unknown frame %d" % (path, st["id"], node))
            parent, ip = nodes[node]
            frames.append(ip)
            node = parent
        if len(frames) != st["depth"]:
            raise DumpError("%s: stack %d has %d frames, says %d" % (path, st["id"], len(frames),
                                                                    st["depth"]))
        d["stacks"][st["id"]] = frames
    d["nframes"] = len(nodes)
    for site in d["site"]:
        for k in SITE_FIELDS:
            site.setdefault(k, 0)
        for k in ("size_hist", "life_hist"):
            site.setdefault(k, None)
    return d


def functions(binary):
    """[(start, end, name)] of the defined functions of an ELF file, by nm."""
    out = subprocess.run(["nm", "-S", "--defined-only", binary], check=True,
                         capture_output=True, text=True).stdout
    funcs = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            start, size = int(parts[0], 16), int(parts[1], 16)
            funcs.append((start, start + size, parts[3]))
    return sorted(funcs)


def by_function(d, binary, prefix="site_"):
    """Sums site records by the innermost frame that lies in `binary` in a function whose name
    starts with prefix. Returns {name: {field: sum}} and the list of those site ids."""
    real = os.path.realpath(binary)
    mods = [m for m in d["module"] if os.path.realpath(m["path"]) == real]
    if not mods:
        raise DumpError("module %s not in the dump's module map" % binary)
    m = mods[0]
    funcs = functions(binary)
    result = {}
    for s in d["site"]:
        for ip in d["stacks"].get(s["stack"], []):
            if isinstance(ip, tuple) or not (m["lo"] <= ip < m["hi"]):
                continue
            off = ip - m["base"] - 1  # a return address: look inside the call
            name = next((f[2] for f in funcs if f[0] <= off < f[1]), None)
            if name and name.startswith(prefix):
                agg = result.setdefault(name, {"ids": []})
                agg["ids"].append(s["id"])
                for k, v in s.items():
                    if isinstance(v, int) and k not in ("id", "stack"):
                        agg[k] = agg.get(k, 0) + v
                break
    return result
