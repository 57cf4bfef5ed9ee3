// What the benchmarks record about the machine beside their figures: the
// 1-minute load average, the CPU model and the kernel (their --json output,
// read by bench/plot.py); and the process's own CPU use.
#pragma once

#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace tollgate_bench {

// The 1-minute load average; -1 if /proc/loadavg cannot be read.
inline double load_average() {
  double l = -1;
  if (FILE *f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

// /proc/cpuinfo's first "model name", or "unknown".
inline std::string cpu_model() {
  std::string model = "unknown";
  if (FILE *f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f)) {
      if (std::strncmp(line, "model name", 10) != 0) continue;
      if (const char *p = std::strchr(line, ':')) {
        model = p + 1;
        model.erase(0, model.find_first_not_of(" \t"));
        model.erase(model.find_last_not_of(" \n") + 1);
      }
      break;
    }
    std::fclose(f);
  }
  return model;
}

// "Linux 6.1.0-...", or "unknown".
inline std::string kernel_release() {
  utsname u{};
  if (uname(&u) != 0) return "unknown";
  return std::string(u.sysname) + " " + u.release;
}

// This process's CPU time (every thread, user and system) in us, and its
// context switches (voluntary and not), so far.
struct Usage {
  double cpu_us;
  double switches;
};
inline Usage usage() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return {(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
              ru.ru_utime.tv_usec + ru.ru_stime.tv_usec,
          static_cast<double>(ru.ru_nvcsw + ru.ru_nivcsw)};
}

// The machine's CPU time so far, from /proc/stat's first line, in CPU
// seconds: busy (user, nice, system, irq, softirq), stolen by the
// hypervisor, and every state together; zeros if it cannot be read.
struct MachineCpu {
  double busy = 0, steal = 0, total = 0;
};
inline MachineCpu machine_cpu() {
  MachineCpu m;
  unsigned long long v[8] = {};
  if (FILE *f = std::fopen("/proc/stat", "r")) {
    if (std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                    &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
      std::memset(v, 0, sizeof v);
    std::fclose(f);
  }
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  m.busy = static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
  m.steal = static_cast<double>(v[7]) / hz;
  for (unsigned long long x : v) m.total += static_cast<double>(x) / hz;
  return m;
}

// What other processes (and the hypervisor) took of the machine while a
// figure ran: shares of all its CPU time. `own_us` and `server_us` are the
// CPU this process and redis-server used meanwhile. More than 5% of either
// makes the figure noisy: not one to claim (docs/benchmarks.md).
struct Noise {
  double other = 0, steal = 0;
  bool noisy() const { return other > 0.05 || steal > 0.05; }
};
inline Noise noise_between(const MachineCpu &a, const MachineCpu &b,
                           double own_us, double server_us) {
  Noise n;
  const double total = b.total - a.total;
  if (total <= 0) return n;
  const double other = (b.busy - a.busy) - (own_us + server_us) / 1e6;
  n.other = other > 0 ? other / total : 0;
  n.steal = (b.steal - a.steal) / total;
  return n;
}

}  // namespace tollgate_bench
