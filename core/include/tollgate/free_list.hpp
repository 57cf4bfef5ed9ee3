// A bounded stash of objects that one thread makes and another releases:
// an async Redis check is set up on the caller's thread and finished on
// the I/O thread. glibc's per-thread caches serve such hand-offs poorly
// (the memory piles up on the releasing side), so the objects, and the
// capacity of the strings inside them, are reused instead.
//
// It never blocks: a contended lock, or one left held by a thread that does
// not exist after fork(), just means plain new and delete.
#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

namespace tollgate {

template <class T, size_t Cap = 256>
class FreeList {
 public:
  FreeList() { items_.reserve(Cap); }
  ~FreeList() {
    for (T *p : items_) delete p;
  }
  FreeList(const FreeList &) = delete;
  FreeList &operator=(const FreeList &) = delete;

  // A kept object (in whatever state give() left it) or a new one.
  T *take() {
    T *p = nullptr;
    if (mu_.try_lock()) {
      if (!items_.empty()) {
        p = items_.back();
        items_.pop_back();
      }
      mu_.unlock();
    }
    return p != nullptr ? p : new T;
  }

  void give(T *p) {
    if (mu_.try_lock()) {
      const bool kept = items_.size() < Cap;
      if (kept) items_.push_back(p);
      mu_.unlock();
      if (kept) return;
    }
    delete p;
  }

 private:
  std::mutex mu_;
  std::vector<T *> items_;
};

}  // namespace tollgate
