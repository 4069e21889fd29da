# Issue #8: what nvhv-agent's whole-process persistence costs (docs/agent-bench.md): pause and
# bytes per incremental checkpoint against memory size and write rate, and redis-benchmark with
# and without WPP at 100 ms. Runs in L1 with real CRIU (tools/nested-host/run); labels "bench" and
# "tier2" (RUN_SERIAL: L1 takes both cores). Skipped (77) without criu, redis or what L1 needs.
# NVHV_BENCH_SIZES, NVHV_BENCH_RATES, NVHV_BENCH_CKPTS, NVHV_BENCH_RUNS, NVHV_BENCH_REDIS_N and
# NVHV_BENCH_REDIS_CLIENTS change the grid and the redis runs (tests/bench/agent_wpp_bench.sh).
add_executable(wpp_dirtier ${CMAKE_CURRENT_LIST_DIR}/wpp_dirtier.c)
target_compile_options(wpp_dirtier PRIVATE -Wall -Wextra)
target_link_options(wpp_dirtier PRIVATE -static)
set_target_properties(wpp_dirtier PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests/bench)
add_test(NAME bench.agent_wpp
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/agent_wpp_bench.sh ${PROJECT_SOURCE_DIR} $<TARGET_FILE:nvhv-agent>
          $<TARGET_FILE:wpp_dirtier> ${CMAKE_BINARY_DIR}/tests/bench/agent_wpp)
set_tests_properties(bench.agent_wpp PROPERTIES
  LABELS "bench;tier2" RUN_SERIAL TRUE TIMEOUT 900 SKIP_RETURN_CODE 77)
