// The log hook (rl_set_log_handler): what a limiter has to say about its
// store, once per episode (a connection lost and regained, a failover
// followed, a slot map changed, the failure mode entered and left), never
// once per call. Messages never hold a secret.
#pragma once

#include <atomic>
#include <mutex>
#include <string>

namespace tollgate {

enum class LogLevel : int { error = 1, warn = 2, info = 3, debug = 4 };

class LogSink {
 public:
  using Fn = void (*)(int level, const char *message, void *user_data);
  // Replaces the handler (nullptr: none). Waits for a message being
  // delivered, so after it returns the old handler is never called again.
  void set(Fn fn, void *user_data, int max_level) {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = fn;
    user_ = user_data;
    max_level_.store(fn ? max_level : 0, std::memory_order_release);
  }
  // Whether a message at `level` would be delivered (cheap: one load).
  bool wants(LogLevel level) const noexcept {
    return static_cast<int>(level) <=
           max_level_.load(std::memory_order_acquire);
  }
  // Delivers `message` on this thread (one message at a time per sink).
  void log(LogLevel level, const std::string &message) const {
    if (!wants(level)) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (fn_ == nullptr || static_cast<int>(level) > max_level_.load()) return;
    try {
      fn_(static_cast<int>(level), message.c_str(), user_);
    } catch (...) {
      // A handler must not throw; if a C++ one does, it stops here.
    }
  }

 private:
  mutable std::mutex mu_;
  Fn fn_ = nullptr;
  void *user_ = nullptr;
  std::atomic<int> max_level_{0};
};

}  // namespace tollgate
