# Swap engine throughput next to cp and zstd -1 (label "bench": not part of the default run).
add_executable(swap_bench ${CMAKE_CURRENT_LIST_DIR}/swap_bench.cpp)
target_compile_options(swap_bench PRIVATE ${NVHV_WARNINGS})
target_link_libraries(swap_bench PRIVATE nvhv_persistence)
add_test(NAME bench.swap COMMAND swap_bench)
set_tests_properties(bench.swap PROPERTIES LABELS bench TIMEOUT 600 RUN_SERIAL TRUE)
