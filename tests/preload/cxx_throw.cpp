// cxx_throw.cpp - C++ threads, exceptions and cross-thread frees, for
// cxx_exceptions.sh.
//
// Four worker threads each loop over: building std::string, std::vector and
// std::map objects; throwing exceptions that carry std::string messages up
// through several frames that hold RAII guards (so unwinding frees heap
// memory); handing heap payloads to the next worker through a
// mutex-protected queue (so they are freed on another thread than the one
// that allocated them).  Each worker ends by throwing an exception that the
// main thread rethrows from a std::exception_ptr.  Everything printed is a
// count or a sum that does not depend on how the threads interleave.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kWorkers = 4;
constexpr int kIterations = 20000;

std::atomic<long> guards_destroyed{0};

std::uint64_t fnv1a(const std::string &s, std::uint64_t h = 1469598103934665603ULL)
{
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}

// The exception thrown deep in the call chain: carries heap strings.
struct DeepError : std::runtime_error {
    DeepError(const std::string &what, std::string where, int depth)
        : std::runtime_error(what), where(std::move(where)), depth(depth) {}
    std::string where;
    int depth;
};

// Holds heap memory while the stack unwinds through it.
struct Guard {
    explicit Guard(int n) : label("guard-" + std::to_string(n)), data(n % 17 + 3, n) {}
    ~Guard() { guards_destroyed.fetch_add(1, std::memory_order_relaxed); }
    Guard(const Guard &) = delete;
    Guard &operator=(const Guard &) = delete;
    std::string label;
    std::vector<int> data;
};

// A heap object that crosses threads.
struct Payload {
    int origin;
    int seq;
    std::string text;
    std::vector<std::uint32_t> numbers;
    std::map<int, std::string> index;
};

// One queue per worker; worker i feeds queue (i + 1) % kWorkers.
struct Mailbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::unique_ptr<Payload>> items;
    bool producer_done = false;
};

Mailbox mailboxes[kWorkers];

struct WorkerResult {
    long iterations = 0;
    long caught_deep = 0;
    long caught_range = 0;
    long caught_nested = 0;
    long sent = 0;
    long received = 0;
    std::uint64_t checksum = 0;     // of this worker's own work
    std::uint64_t recv_checksum = 0; // sum over received payloads
    std::exception_ptr final_error;
};

WorkerResult results[kWorkers];

[[noreturn]] void throw_deep(int worker, int iter)
{
    throw DeepError("deep failure in worker " + std::to_string(worker) + " at iteration " +
                        std::to_string(iter) + std::string(iter % 40, '!'),
                    "frame-" + std::to_string(iter % 5), iter % 7);
}

int descend(int worker, int iter, int depth)
{
    Guard g(iter + depth);
    std::string trail = g.label + "/" + std::to_string(depth);
    if (depth == 0) {
        if (iter % 3 == 0)
            throw_deep(worker, iter);
        if (iter % 3 == 1) {
            std::vector<int> small(4);
            return small.at(static_cast<std::size_t>(iter % 9)); // throws if >= 4
        }
        try {
            throw std::logic_error("inner " + trail);
        } catch (...) {
            std::throw_with_nested(std::runtime_error("outer " + trail));
        }
    }
    return static_cast<int>(trail.size()) + descend(worker, iter, depth - 1) +
           static_cast<int>(g.data.size());
}

std::uint64_t containers(int worker, int iter)
{
    std::map<std::string, std::vector<int>> m;
    for (int k = 0; k < 12; k++) {
        std::string key = "w" + std::to_string(worker) + "-k" + std::to_string((iter * 7 + k) % 29);
        m[key].push_back(k * iter);
    }
    std::vector<std::string> words;
    for (auto &kv : m)
        words.push_back(kv.first + ":" + std::to_string(kv.second.size()));
    std::string joined;
    for (auto &w : words)
        joined += w + ",";
    if (iter % 50 == 0) {
        // An occasional large buffer, beyond the small size classes.
        std::vector<char> big(4096 + iter % 8192, 'b');
        joined += std::to_string(big.size());
    }
    return fnv1a(joined);
}

std::unique_ptr<Payload> make_payload(int worker, int seq)
{
    auto p = std::make_unique<Payload>();
    p->origin = worker;
    p->seq = seq;
    p->text = "payload " + std::to_string(worker) + "." + std::to_string(seq);
    for (int i = 0; i < seq % 23 + 1; i++)
        p->numbers.push_back(static_cast<std::uint32_t>(seq * 31 + i));
    for (int i = 0; i < seq % 5; i++)
        p->index[i] = p->text + "#" + std::to_string(i);
    return p;
}

std::uint64_t consume(const Payload &p)
{
    std::uint64_t h = fnv1a(p.text);
    for (auto n : p.numbers)
        h += n;
    for (auto &kv : p.index)
        h += fnv1a(kv.second) % 1000;
    return h;
}

void send(int to, std::unique_ptr<Payload> p)
{
    Mailbox &mb = mailboxes[to];
    {
        std::lock_guard<std::mutex> lock(mb.mu);
        mb.items.push_back(std::move(p));
    }
    mb.cv.notify_one();
}

// Takes what is queued for worker `self`; waits for the producer to finish
// when `drain` is set.
void receive(int self, bool drain)
{
    Mailbox &mb = mailboxes[self];
    WorkerResult &r = results[self];
    std::deque<std::unique_ptr<Payload>> got;
    {
        std::unique_lock<std::mutex> lock(mb.mu);
        if (drain)
            mb.cv.wait(lock, [&] { return mb.producer_done; });
        got.swap(mb.items);
    }
    for (auto &p : got) {
        r.recv_checksum += consume(*p);
        r.received++;
    }
    // `got` goes out of scope here: payloads allocated by another thread
    // are freed on this one.
}

void worker(int id)
{
    WorkerResult &r = results[id];
    const int to = (id + 1) % kWorkers;
    try {
        for (int iter = 0; iter < kIterations; iter++) {
            r.iterations++;
            r.checksum += containers(id, iter);
            try {
                r.checksum += static_cast<std::uint64_t>(descend(id, iter, 2 + iter % 4));
            } catch (const DeepError &e) {
                r.caught_deep++;
                r.checksum += fnv1a(e.what()) % 9973 + fnv1a(e.where) % 97 +
                              static_cast<std::uint64_t>(e.depth);
            } catch (const std::out_of_range &) {
                r.caught_range++;
            } catch (const std::runtime_error &e) {
                try {
                    std::rethrow_if_nested(e);
                } catch (const std::logic_error &inner) {
                    r.caught_nested++;
                    r.checksum += fnv1a(std::string(e.what()) + inner.what()) % 10007;
                }
            }
            if (iter % 4 == 0) {
                send(to, make_payload(id, iter));
                r.sent++;
            }
            if (iter % 64 == 0)
                receive(id, false);
        }
        {
            std::lock_guard<std::mutex> lock(mailboxes[to].mu);
            mailboxes[to].producer_done = true;
        }
        mailboxes[to].cv.notify_all();
        receive(id, true);
        throw std::runtime_error("worker " + std::to_string(id) + " finished with checksum " +
                                 std::to_string(r.checksum % 1000000007));
    } catch (...) {
        r.final_error = std::current_exception();
    }
}

} // namespace

int main()
{
    std::vector<std::thread> threads;
    for (int i = 0; i < kWorkers; i++)
        threads.emplace_back(worker, i);
    for (auto &t : threads)
        t.join();

    int bad = 0;
    long total_sent = 0, total_received = 0;
    for (int i = 0; i < kWorkers; i++) {
        const WorkerResult &r = results[i];
        std::printf("worker %d: iterations=%ld deep=%ld range=%ld nested=%ld sent=%ld "
                    "received=%ld checksum=%llu recv_checksum=%llu\n",
                    i, r.iterations, r.caught_deep, r.caught_range, r.caught_nested, r.sent,
                    r.received, static_cast<unsigned long long>(r.checksum % 1000000007),
                    static_cast<unsigned long long>(r.recv_checksum % 1000000007));
        total_sent += r.sent;
        total_received += r.received;
        try {
            if (r.final_error)
                std::rethrow_exception(r.final_error);
            std::printf("worker %d: no final exception\n", i);
            bad++;
        } catch (const std::runtime_error &e) {
            std::printf("main caught: %s\n", e.what());
        }
    }
    // Every guard built on the way down was destroyed on the way up.
    std::printf("guards destroyed: %ld\n", guards_destroyed.load());
    std::printf("payloads sent=%ld received=%ld\n", total_sent, total_received);
    if (total_sent != total_received)
        bad++;
    return bad == 0 ? 0 : 1;
}
