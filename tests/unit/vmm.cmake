add_executable(vmm_unit_tests
  ${CMAKE_CURRENT_LIST_DIR}/config_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/vmm_loader_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/serial_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/rtc_cmos_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/linux_loader_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/time_slice_test.cpp)
target_compile_options(vmm_unit_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(vmm_unit_tests PRIVATE nvhv_vmm nvhv_test_support GTest::gtest_main)
nvhv_discover_tests(vmm_unit_tests LABELS unit)

add_executable(kvm_state_unit_tests ${CMAKE_CURRENT_LIST_DIR}/kvm_state_test.cpp)
target_compile_options(kvm_state_unit_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(kvm_state_unit_tests PRIVATE nvhv_vmm nvhv_test_support GTest::gtest_main)
nvhv_discover_tests(kvm_state_unit_tests LABELS unit kvm PREFIX "kvm_state.")
