# Tests of the swap engine (persistence/swap*): named "swap.<Suite>.<Test>".
add_executable(swap_unit_tests ${CMAKE_CURRENT_LIST_DIR}/swap_test.cpp ${CMAKE_CURRENT_LIST_DIR}/swap_io_test.cpp)
target_compile_options(swap_unit_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(swap_unit_tests PRIVATE nvhv_persistence nvhv_test_support GTest::gtest_main)
nvhv_discover_tests(swap_unit_tests LABELS unit persistence swap PREFIX "swap." TIMEOUT 300)

add_executable(swap_dirty_map_unit_tests ${CMAKE_CURRENT_LIST_DIR}/swap_dirty_map_test.cpp)
target_compile_options(swap_dirty_map_unit_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(swap_dirty_map_unit_tests PRIVATE nvhv_vmm GTest::gtest_main)
nvhv_discover_tests(swap_dirty_map_unit_tests LABELS unit swap PREFIX "swap." TIMEOUT 60)

add_executable(swap_sparse_unit_tests ${CMAKE_CURRENT_LIST_DIR}/swap_sparse_test.cpp ${CMAKE_CURRENT_LIST_DIR}/swap_holes_test.cpp)
target_compile_options(swap_sparse_unit_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(swap_sparse_unit_tests PRIVATE nvhv_persistence nvhv_test_support GTest::gtest_main)
nvhv_discover_tests(swap_sparse_unit_tests LABELS unit persistence swap PREFIX "swap." TIMEOUT 120)
