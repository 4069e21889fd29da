# testos under QEMU (its PVH entry), docs/testos.md. Needs qemu-system-x86 (tools/setup-deps test).
add_executable(qemu_testos_test ${CMAKE_CURRENT_LIST_DIR}/qemu_testos_test.cpp)
target_compile_options(qemu_testos_test PRIVATE ${NVHV_WARNINGS})
target_link_libraries(qemu_testos_test PRIVATE nvhv_test_support GTest::gtest_main)
add_dependencies(qemu_testos_test testos)
# Serial like the other KVM tests: two vCPUs already fill this machine's two cores.
gtest_discover_tests(qemu_testos_test TEST_PREFIX "testos." TEST_LIST nvhv_testos_qemu_tests
  PROPERTIES RUN_SERIAL TRUE TIMEOUT 180)
# gtest_discover_tests splits list-valued properties (CMake 3.25 writes "LABELS integration kvm",
# so kvm becomes a property name); the labels are set by a test include file that runs after it.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/testos_qemu_labels.cmake
  "set_tests_properties(\${nvhv_testos_qemu_tests} PROPERTIES LABELS \"integration;kvm\")\n")
set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${CMAKE_CURRENT_BINARY_DIR}/testos_qemu_labels.cmake)
