# `nvhv swap-in guest.json --from FILE`, the offline counterpart of `nvhv swap-out`, with the real
# binary on testos: a later plain `nvhv run` resumes the guest; refusals change nothing.
add_executable(nvhv_swap_offline_tests ${CMAKE_CURRENT_LIST_DIR}/swap_offline_test.cpp)
target_compile_options(nvhv_swap_offline_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(nvhv_swap_offline_tests PRIVATE nvhv_persistence nvhv_test_support nlohmann_json::nlohmann_json GTest::gtest_main)
add_dependencies(nvhv_swap_offline_tests nvhv testos)
nvhv_discover_tests(nvhv_swap_offline_tests LABELS integration kvm swap PREFIX "swap_offline." SERIAL TIMEOUT 300)
