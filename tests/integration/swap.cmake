# Swapping a running testos VM out to a file and back in onto another backing, with crashes
# injected at every step (NVHV_FAULT_INJECT) and at random times.
add_executable(nvhv_swap_driver ${CMAKE_CURRENT_LIST_DIR}/swap_driver.cpp)
target_compile_options(nvhv_swap_driver PRIVATE ${NVHV_WARNINGS})
target_link_libraries(nvhv_swap_driver PRIVATE nvhv_vmm)
set_target_properties(nvhv_swap_driver PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${NVHV_BIN_DIR})

add_executable(nvhv_swap_integration_tests ${CMAKE_CURRENT_LIST_DIR}/swap_test.cpp)
target_compile_options(nvhv_swap_integration_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(nvhv_swap_integration_tests PRIVATE nvhv_persistence nvhv_test_support nlohmann_json::nlohmann_json GTest::gtest_main)
add_dependencies(nvhv_swap_integration_tests nvhv testos nvhv_swap_driver)
nvhv_discover_tests(nvhv_swap_integration_tests LABELS integration kvm swap PREFIX "swap." SERIAL TIMEOUT 600)

# Incremental swap-out through the API from KVM's dirty log since the swap-in.
add_executable(nvhv_swap_dirty_tests ${CMAKE_CURRENT_LIST_DIR}/swap_dirty_test.cpp)
target_compile_options(nvhv_swap_dirty_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(nvhv_swap_dirty_tests PRIVATE nvhv_api nvhv_test_support nlohmann_json::nlohmann_json GTest::gtest_main)
add_dependencies(nvhv_swap_dirty_tests nvhv testos)
nvhv_discover_tests(nvhv_swap_dirty_tests LABELS integration kvm swap PREFIX "swap." SERIAL TIMEOUT 300)
