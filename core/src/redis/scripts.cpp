#include "tollgate/redis/scripts.hpp"

#include <cstddef>

namespace tollgate::redis {
namespace detail {

// Defined in the generated scripts_data.cpp (cmake/EmbedScripts.cmake), in
// the order gcra, token_bucket, fixed_window, sliding_window, multi, batch,
// batch_cluster, block, many, lease: the first four follow the Algorithm
// enum.
extern const Script kProductionScripts[10];
extern const std::string_view kProductionLibrary;
#if defined(TOLLGATE_TESTING)
extern const Script kPinnedScripts[10];
extern const std::string_view kPinnedLibrary;
#endif

}  // namespace detail

namespace {

constexpr size_t kMultiIndex = 4;
constexpr size_t kBatchIndex = 5;
constexpr size_t kClusterBatchIndex = 6;
constexpr size_t kBlockIndex = 7;
constexpr size_t kManyIndex = 8;
constexpr size_t kLeaseIndex = 9;

const Script *scripts(bool pinned_clock) {
  if (!pinned_clock) return detail::kProductionScripts;
#if defined(TOLLGATE_TESTING)
  return detail::kPinnedScripts;
#else
  return nullptr;
#endif
}

}  // namespace

const Script *script_for(Algorithm algorithm, bool pinned_clock) {
  const auto i = static_cast<int32_t>(algorithm);
  if (i < 0 || i > static_cast<int32_t>(Algorithm::sliding_window))
    return nullptr;
  const Script *all = scripts(pinned_clock);
  return all ? &all[i] : nullptr;
}

const Script *multi_script(bool pinned_clock) {
  const Script *all = scripts(pinned_clock);
  return all ? &all[kMultiIndex] : nullptr;
}

const Script *batch_script(bool pinned_clock) {
  const Script *all = scripts(pinned_clock);
  return all ? &all[kBatchIndex] : nullptr;
}

const Script *cluster_batch_script(bool pinned_clock) {
  const Script *all = scripts(pinned_clock);
  return all ? &all[kClusterBatchIndex] : nullptr;
}

const Script *block_script(bool pinned_clock) {
  const Script *all = scripts(pinned_clock);
  return all ? &all[kBlockIndex] : nullptr;
}

const Script *many_script(bool pinned_clock) {
  const Script *all = scripts(pinned_clock);
  return all ? &all[kManyIndex] : nullptr;
}

const Script *lease_script(bool pinned_clock) {
  const Script *all = scripts(pinned_clock);
  return all ? &all[kLeaseIndex] : nullptr;
}

std::string_view function_library(bool pinned_clock) {
  if (!pinned_clock) return detail::kProductionLibrary;
#if defined(TOLLGATE_TESTING)
  return detail::kPinnedLibrary;
#else
  return {};
#endif
}

bool has_pinned_clock_scripts() {
  return scripts(true) != nullptr;
}

}  // namespace tollgate::redis
