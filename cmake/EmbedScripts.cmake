# Composes the Redis Lua scripts from the parts in core/src/redis/lua/ and
# embeds them, with their SHA1, in a generated C++ source.
#
#   tollgate_embed_scripts(OUTPUT <file.cpp> LUA_DIR <dir> [PINNED <bool>])
#
# Every script is: a clock prelude (production: Redis TIME; pinned: ARGV[2]),
# helpers.lua, the algorithm part(s), a wrapper and, for the single-policy
# scripts, one line naming the algorithm. The one-policy checks are also
# composed as one Redis 7 function library (_tollgate_compose_library). Runs at configure time; CMake
# re-runs itself when a part changes (CMAKE_CONFIGURE_DEPENDS). The file is
# rewritten only when its text changes, so a reconfigure rebuilds nothing
# needlessly.
#
# The generated file defines, in namespace tollgate::redis::detail,
# kProductionScripts[10] and (PINNED only) kPinnedScripts[10], each in the order
# gcra, token_bucket, fixed_window, sliding_window, multi, batch,
# batch_cluster (the batch script for one cluster node: a first line that
# lets its keys lie in several slots, the keys in ARGV, each check guarded),
# block (rl_block), many (rl_check_keys), lease (rl_lease_*); the first four
# name their function in the library, kProductionLibrary (PINNED only:
# kPinnedLibrary). scripts.cpp declares them. tests/redis_scripts_check.py parses the same file.

set(_TOLLGATE_LUA_DELIM "tollgate_lua")

# The parts <lua_dir>/<part>.lua, in order, each ending with a newline.
function(_tollgate_read_parts out lua_dir)
  set(all "")
  foreach(part IN LISTS ARGN)
    file(READ "${lua_dir}/${part}.lua" text)
    string(REPLACE "\r" "" text "${text}")
    if(NOT text MATCHES "\n$")
      string(APPEND text "\n")
    endif()
    string(APPEND all "${text}")
  endforeach()
  set(${out} "${all}" PARENT_SCOPE)
endfunction()

function(_tollgate_compose_script out_body lua_dir prelude name)
  set(algorithms gcra token_bucket fixed_window sliding_window)
  set(body "")
  if(name STREQUAL "block")
    set(parts ${prelude} helpers block block_cmd)
    set(tail "")
  elseif(name STREQUAL "lease")
    set(parts ${prelude} helpers block lease)
    set(tail "")
  elseif(name STREQUAL "many")
    set(parts ${prelude} helpers ${algorithms} block check policies many)
    set(tail "")
  elseif(name STREQUAL "batch_cluster")
    # The batch script for a Redis Cluster node: its checks' keys lie in
    # several slots, all served by that node (Redis 7.0+ shebang flag), and
    # travel in ARGV.
    set(parts ${prelude} helpers ${algorithms} block check policies
              batch_cluster_keys batch)
    set(tail "")
    set(body "#!lua flags=allow-cross-slot-keys\n")
  elseif(name STREQUAL "batch")
    set(parts ${prelude} helpers ${algorithms} block check policies batch_keys
              batch)
    set(tail "")
  elseif(name STREQUAL "multi")
    set(parts ${prelude} helpers ${algorithms} block check policies multi)
    set(tail "")
  elseif(name STREQUAL "token_bucket")
    # The token bucket is GCRA under another name (token_bucket.lua).
    set(parts ${prelude} helpers gcra token_bucket block check single)
    set(tail "return run_single(${name})\n")
  else()
    # One policy: only its algorithm's code (every function a script
    # defines is made again on every call).
    set(parts ${prelude} helpers ${name} block check single)
    set(tail "return run_single(${name})\n")
  endif()
  if(prelude STREQUAL "prelude_production")
    list(PREPEND parts replicate)
  endif()
  _tollgate_read_parts(text "${lua_dir}" ${parts})
  string(APPEND body "${text}${tail}")
  if(body MATCHES "\\)${_TOLLGATE_LUA_DELIM}\"")
    message(FATAL_ERROR "Lua script ${name} contains the raw-string delimiter "
                        ")${_TOLLGATE_LUA_DELIM}\"")
  endif()
  set(${out_body} "${body}" PARENT_SCOPE)
endfunction()

# The one-policy checks as one Redis 7 function library (docs/redis.md,
# "Functions"): FUNCTION LOAD runs its top level once, where Redis offers
# only redis.register_function (no redis.call, string, math or struct), so
# the scripts' definitions live in define(), run by the first FCALL and
# kept. KEYS and ARGV, globals in a script, are upvalues set by every
# call. The library is named after the SHA1 of its code (`out_name`), and
# so are its functions (<name>_gcra, ...): two versions of tollgate on one
# Redis load two libraries and never call each other's code.
function(_tollgate_compose_library out_code out_name lua_dir prelude)
  _tollgate_read_parts(code "${lua_dir}" ${prelude} helpers gcra token_bucket
                       fixed_window sliding_window block check single)
  string(SHA1 sha "${code}")
  string(SUBSTRING "${sha}" 0 16 short)
  set(name "tollgate_${short}")
  set(head "#!lua name=${name}\n"
           "-- tollgate's one-policy checks (generated from core/src/redis/lua/).\n"
           "local KEYS, ARGV\n"
           "local function define()\n")
  string(CONCAT head ${head})
  set(tail "return run_single, {gcra = gcra, token_bucket = token_bucket,\n"
           "  fixed_window = fixed_window, sliding_window = sliding_window}\n"
           "end\n"
           "local run, algorithms\n"
           "local function entry(algorithm)\n"
           "  return function(keys, args)\n"
           "    KEYS, ARGV = keys, args\n"
           "    if not run then run, algorithms = define() end\n"
           "    return run(algorithms[algorithm])\n"
           "  end\n"
           "end\n")
  string(CONCAT tail ${tail})
  foreach(a gcra token_bucket fixed_window sliding_window)
    string(APPEND tail "redis.register_function('${name}_${a}', entry('${a}'))\n")
  endforeach()
  set(code "${head}${code}${tail}")
  if(code MATCHES "\\)${_TOLLGATE_LUA_DELIM}\"")
    message(FATAL_ERROR "the Lua library contains the raw-string delimiter")
  endif()
  set(${out_code} "${code}" PARENT_SCOPE)
  set(${out_name} "${name}" PARENT_SCOPE)
endfunction()

# Appends the C++ array `array` holding the ten scripts with `prelude`, and
# `library`, the function library with the same prelude.
function(_tollgate_emit_array out_text lua_dir prelude array library)
  _tollgate_compose_library(code lib_name "${lua_dir}" ${prelude})
  set(text "extern const Script ${array}[10];\nconst Script ${array}[10] = {\n")
  foreach(name gcra token_bucket fixed_window sliding_window multi batch
               batch_cluster block many lease)
    _tollgate_compose_script(body "${lua_dir}" ${prelude} ${name})
    string(SHA1 sha "${body}")
    set(function "")
    if(name MATCHES "^(gcra|token_bucket|fixed_window|sliding_window)$")
      set(function "${lib_name}_${name}")
    endif()
    string(APPEND text
      "    {\"${name}\",\n"
      "     R\"${_TOLLGATE_LUA_DELIM}(${body})${_TOLLGATE_LUA_DELIM}\",\n"
      "     \"${sha}\",\n"
      "     \"${function}\"},\n")
  endforeach()
  string(APPEND text "};\n\n"
    "extern const std::string_view ${library};\n"
    "const std::string_view ${library} =\n"
    "    R\"${_TOLLGATE_LUA_DELIM}(${code})${_TOLLGATE_LUA_DELIM}\";\n\n")
  set(${out_text} "${text}" PARENT_SCOPE)
endfunction()

function(tollgate_embed_scripts)
  cmake_parse_arguments(ARG "" "OUTPUT;LUA_DIR;PINNED" "" ${ARGN})
  set(parts replicate prelude_production prelude_pinned helpers gcra token_bucket
            fixed_window sliding_window single check multi batch batch_keys
            batch_cluster_keys block block_cmd many policies lease)
  foreach(part IN LISTS parts)
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
                 "${ARG_LUA_DIR}/${part}.lua")
  endforeach()

  set(text "")
  string(APPEND text "// Generated by cmake/EmbedScripts.cmake from core/src/redis/lua/.\n"
           "// Do not edit: change the .lua parts and re-run CMake.\n"
           "#include \"tollgate/redis/scripts.hpp\"\n\n"
           "namespace tollgate::redis::detail {\n\n")
  _tollgate_emit_array(array "${ARG_LUA_DIR}" prelude_production
                       kProductionScripts kProductionLibrary)
  string(APPEND text "${array}")
  if(ARG_PINNED)
    _tollgate_emit_array(array "${ARG_LUA_DIR}" prelude_pinned kPinnedScripts
                         kPinnedLibrary)
    string(APPEND text "${array}")
  endif()
  string(APPEND text "}  // namespace tollgate::redis::detail\n")

  set(old "")
  if(EXISTS "${ARG_OUTPUT}")
    file(READ "${ARG_OUTPUT}" old)
  endif()
  if(NOT old STREQUAL text)
    file(WRITE "${ARG_OUTPUT}" "${text}")
  endif()
endfunction()
