"""threads.py: threads that start, run Python code and exit while another thread allocates
(tests/python/frames.sh): thread states and frame chains come and go under the walker."""
import threading
import zlib

out = []
lock = threading.Lock()


def work(k):
    data = [("%d-%d" % (k, i)) * 3 for i in range(200)]
    with lock:
        out.append(zlib.crc32("".join(data).encode()))


def churn(stop):
    n = 0
    while not stop.is_set():
        n += len({i: str(i) for i in range(100)})
    return n


stop = threading.Event()
bg = threading.Thread(target=churn, args=(stop,))
bg.start()
for round_ in range(60):
    ts = [threading.Thread(target=work, args=(round_ * 8 + j,)) for j in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
stop.set()
bg.join()
print("threads:", len(out), sum(out) & 0xFFFFFFFF)
