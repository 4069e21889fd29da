add_executable(api_unit_tests ${CMAKE_CURRENT_LIST_DIR}/jsonrpc_test.cpp)
target_compile_options(api_unit_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(api_unit_tests PRIVATE nvhv_api nvhv_test_support GTest::gtest_main)
gtest_discover_tests(api_unit_tests TEST_PREFIX "api." PROPERTIES LABELS unit)
