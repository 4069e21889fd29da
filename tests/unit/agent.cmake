# nvhv-agent's store, stats parsing and parameter checks (guest-images/agent, docs/agent.md).
add_executable(agent_unit_tests ${CMAKE_CURRENT_LIST_DIR}/agent_store_test.cpp)
target_compile_options(agent_unit_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(agent_unit_tests PRIVATE nvhv_agent_core nvhv_test_support GTest::gtest_main)
gtest_discover_tests(agent_unit_tests TEST_PREFIX "agent." PROPERTIES LABELS unit)
