# Benchmarks (label "bench"): plain programs printing a table and one JSON line each. They fail
# only when something is broken (a VMM did not boot, a checkpoint did not resume); missed targets
# are printed, not failed. Run serially: two vCPU threads already fill this machine's two cores.
# NVHV_BENCH_RUNS=<n> sets the repetitions; NVHV_BENCH_NO_QEMU=1 skips the QEMU comparisons;
# checkpoint_latency also reads NVHV_BENCH_TICK_MS, NVHV_BENCH_MEM_MIB and NVHV_BENCH_RAW=1 (all samples).
add_library(nvhv_bench_support STATIC
  ${CMAKE_CURRENT_LIST_DIR}/bench_process.cpp
  ${CMAKE_CURRENT_LIST_DIR}/bench_report.cpp
  ${CMAKE_CURRENT_LIST_DIR}/bench_guests.cpp
  ${CMAKE_CURRENT_LIST_DIR}/proc_stats.cpp
  ${CMAKE_CURRENT_LIST_DIR}/qmp_client.cpp)
target_compile_options(nvhv_bench_support PRIVATE ${NVHV_WARNINGS})
target_link_libraries(nvhv_bench_support PUBLIC nvhv_test_support nvhv_base nlohmann_json::nlohmann_json Threads::Threads)

foreach(bench boot_latency memory_overhead checkpoint_latency)
  add_executable(bench_${bench} ${CMAKE_CURRENT_LIST_DIR}/${bench}.cpp)
  target_compile_options(bench_${bench} PRIVATE ${NVHV_WARNINGS})
  target_link_libraries(bench_${bench} PRIVATE nvhv_bench_support)
  add_dependencies(bench_${bench} nvhv testos)
  add_test(NAME bench.${bench} COMMAND bench_${bench})
  set_tests_properties(bench.${bench} PROPERTIES LABELS bench RUN_SERIAL TRUE TIMEOUT 300)
endforeach()
target_sources(bench_checkpoint_latency PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_cycle.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_nvhv.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint_qemu.cpp)
