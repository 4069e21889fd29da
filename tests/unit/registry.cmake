# The host registry's entries, files and locking (vmm/fleet/registry.hpp).
add_executable(registry_unit_tests ${CMAKE_CURRENT_LIST_DIR}/registry_test.cpp)
target_compile_options(registry_unit_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(registry_unit_tests PRIVATE nvhv_fleet nvhv_test_support GTest::gtest_main)
nvhv_discover_tests(registry_unit_tests PREFIX "unit.registry." LABELS unit fleet TIMEOUT 60)
