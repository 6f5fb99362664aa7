"""A module of the test application's own (tests/python/app.py imports it)."""


class Shape:
    def __init__(self, n):
        self.points = [(i, i * 2) for i in range(n)]  # MOD_POINTS

    def area(self):
        return bytearray(64 * len(self.points))  # MOD_AREA

    @classmethod
    def make(cls, n):
        return cls(n)  # MOD_MAKE


def build_table(n):
    return {"key%05d" % i: [i] for i in range(n)}  # MOD_TABLE
