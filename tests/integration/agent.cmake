# nvhv-agent's JSON-RPC surface over --stdio, on this machine (where CRIU itself cannot dump;
# the real checkpoints are tier2.agent_wpp).
add_executable(agent_integration_tests ${CMAKE_CURRENT_LIST_DIR}/agent_rpc_test.cpp)
target_compile_options(agent_integration_tests PRIVATE ${NVHV_WARNINGS})
target_compile_definitions(agent_integration_tests PRIVATE NVHV_AGENT="$<TARGET_FILE:nvhv-agent>")
target_link_libraries(agent_integration_tests PRIVATE nvhv_test_support nlohmann_json::nlohmann_json GTest::gtest_main)
add_dependencies(agent_integration_tests nvhv-agent)
gtest_discover_tests(agent_integration_tests TEST_PREFIX "agent." PROPERTIES LABELS integration TIMEOUT 120)
