// Work split among XLA's intra-op threads, shared by flatjax's CPU kernels.
//
// Items go to whichever thread claims them next; the calling thread works too
// and then waits only for items claimed, never for a scheduled task that has
// not started (XLA may be running another kernel call on the pool's other
// threads, and waiting for it could deadlock).

#ifndef FLATJAX_KERNELS_PARALLEL_H_
#define FLATJAX_KERNELS_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace flatjax {

// Calls work(item, scratch) for item in [0, items), scratch a per-thread
// zeroed buffer of scratch_bytes (0 for none).
template <typename Work>
void ParallelFor(xla::ffi::ThreadPool& pool, int64_t items, int64_t scratch_bytes, Work work) {
  if (items <= 0) return;
  struct Shared {
    Work work;
    int64_t items, scratch_bytes;
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mutex;
    std::condition_variable finished;
    explicit Shared(Work w, int64_t n, int64_t s) : work(std::move(w)), items(n), scratch_bytes(s) {}
    void Run() {
      std::unique_ptr<uint8_t[]> scratch(scratch_bytes ? new uint8_t[scratch_bytes]() : nullptr);
      for (int64_t i = next.fetch_add(1); i < items; i = next.fetch_add(1)) {
        work(i, scratch.get());
        if (done.fetch_add(1) + 1 == items) {
          std::lock_guard<std::mutex> lock(mutex);
          finished.notify_all();
        }
      }
    }
  };
  auto shared = std::make_shared<Shared>(std::move(work), items, scratch_bytes);
  const int64_t helpers = std::min<int64_t>(items, pool.num_threads()) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule([shared] { shared->Run(); });
  shared->Run();
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->finished.wait(lock, [&] { return shared->done.load() == shared->items; });
}

}  // namespace flatjax

#endif  // FLATJAX_KERNELS_PARALLEL_H_
