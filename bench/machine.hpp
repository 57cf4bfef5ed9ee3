// What the benchmarks record about the machine beside their figures: the
// 1-minute load average, the CPU model and the kernel (their --json output,
// read by bench/plot.py); and the process's own CPU use.
#pragma once

#include <sys/resource.h>
#include <sys/utsname.h>

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

}  // namespace tollgate_bench
