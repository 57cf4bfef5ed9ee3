# Regenerates the embedded Lua scripts for a mutation run without a full
# CMake re-run:  cmake -DSRC=<tree> -DOUT=<scripts_data.cpp> -P embed_scripts.cmake
include(${SRC}/cmake/EmbedScripts.cmake)
tollgate_embed_scripts(OUTPUT ${OUT} LUA_DIR ${SRC}/core/src/redis/lua PINNED ON)
