"""The Python program of the page's test (tests/tools/html.sh): allocations in known functions,
nested, so that the page's call tree shows <module> -> build -> make_rows."""


def make_rows(n):
    return [("row %d " % i) * 4 for i in range(n)]


def make_index(rows):
    return {r: i for i, r in enumerate(rows)}


def build():
    rows = make_rows(20000)
    index = make_index(rows)
    return rows, index


kept = build()
temporary = [build() for _ in range(3)]
del temporary
print(len(kept[0]), len(kept[1]))
