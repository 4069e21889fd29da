# on_reset (docs/config.md): testos resets itself (reset_after=N) under build/bin/nvhv.
add_executable(nvhv_reset_integration_tests ${CMAKE_CURRENT_LIST_DIR}/nvhv_reset_test.cpp)
target_compile_options(nvhv_reset_integration_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(nvhv_reset_integration_tests PRIVATE nvhv_vmm nvhv_test_support nlohmann_json::nlohmann_json GTest::gtest_main)
add_dependencies(nvhv_reset_integration_tests nvhv testos)
nvhv_discover_tests(nvhv_reset_integration_tests PREFIX "nvhv.reset." LABELS integration kvm SERIAL TIMEOUT 300)
