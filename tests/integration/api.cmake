add_executable(api_test_server
  ${CMAKE_CURRENT_LIST_DIR}/api_test_server.cpp
  ${CMAKE_CURRENT_LIST_DIR}/api_test_methods.cpp)
target_compile_options(api_test_server PRIVATE ${NVHV_WARNINGS})
target_link_libraries(api_test_server PRIVATE nvhv_api)

add_executable(api_integration_tests
  ${CMAKE_CURRENT_LIST_DIR}/api_server_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/nvhvctl_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/api_test_methods.cpp)
target_compile_options(api_integration_tests PRIVATE ${NVHV_WARNINGS})
target_compile_definitions(api_integration_tests PRIVATE API_TEST_SERVER="$<TARGET_FILE:api_test_server>")
target_link_libraries(api_integration_tests PRIVATE nvhv_api nvhv_test_support GTest::gtest_main)
# The nvhvctl tests run the built binaries.
add_dependencies(api_integration_tests nvhvctl api_test_server)
gtest_discover_tests(api_integration_tests TEST_PREFIX "api." PROPERTIES LABELS integration TIMEOUT 120)
