# agent.* proxied through the real API socket and a real virtio-console driven through its
# virtqueues by a fake guest agent (tests/unit/virtio_test_driver.*). No KVM needed.
add_executable(agent_proxy_integration_tests
  ${CMAKE_CURRENT_LIST_DIR}/agent_proxy_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../unit/virtio_test_driver.cpp)
target_compile_options(agent_proxy_integration_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(agent_proxy_integration_tests PRIVATE nvhv_vmm nvhv_devices nvhv_test_support GTest::gtest_main)
nvhv_discover_tests(agent_proxy_integration_tests PREFIX "api.agent_proxy." LABELS integration TIMEOUT 120)

# The same methods through a real `nvhv run` of testos (KVM): Machine and VmApi wiring.
add_executable(agent_proxy_vm_tests ${CMAKE_CURRENT_LIST_DIR}/agent_proxy_vm_test.cpp)
target_compile_options(agent_proxy_vm_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(agent_proxy_vm_tests PRIVATE nvhv_api nvhv_test_support nlohmann_json::nlohmann_json GTest::gtest_main)
add_dependencies(agent_proxy_vm_tests nvhv testos)
nvhv_discover_tests(agent_proxy_vm_tests PREFIX "api.agent_proxy_vm." LABELS integration kvm SERIAL TIMEOUT 300)
