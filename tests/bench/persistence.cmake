# Figures of the persistence layer on its own (no VM): state encoding and plain-file commit.
add_executable(persistence_bench ${CMAKE_SOURCE_DIR}/tests/bench/persistence_bench.cpp)
target_include_directories(persistence_bench PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
target_compile_options(persistence_bench PRIVATE ${NVHV_WARNINGS})
target_link_libraries(persistence_bench PRIVATE nvhv_persistence nvhv_test_support GTest::gtest_main)
nvhv_discover_tests(persistence_bench PREFIX "bench." LABELS bench SERIAL)
