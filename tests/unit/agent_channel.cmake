# The host end of the guest agent's channel (vmm/agent_channel.*): named "api.agent.<Suite>.<Test>"
# so `ctest -R api` selects them with the rest of the API.
add_executable(agent_channel_unit_tests ${CMAKE_CURRENT_LIST_DIR}/agent_channel_test.cpp)
target_compile_options(agent_channel_unit_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(agent_channel_unit_tests PRIVATE nvhv_vmm nvhv_test_support GTest::gtest_main)
nvhv_discover_tests(agent_channel_unit_tests LABELS unit PREFIX "api.agent." TIMEOUT 60)
