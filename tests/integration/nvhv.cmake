add_executable(nvhv_integration_tests ${CMAKE_CURRENT_LIST_DIR}/nvhv_boot_test.cpp)
target_compile_options(nvhv_integration_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(nvhv_integration_tests PRIVATE nvhv_test_support nlohmann_json::nlohmann_json GTest::gtest_main)
add_dependencies(nvhv_integration_tests nvhv testos)
# KVM tests are run one at a time: two vCPU threads already fill this machine's two cores.
nvhv_discover_tests(nvhv_integration_tests LABELS integration kvm SERIAL TIMEOUT 300)
