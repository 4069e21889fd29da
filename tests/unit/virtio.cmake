# Tests of devices/pci and devices/virtio: named "virtio.<Suite>.<Test>" so `ctest -R virtio`
# selects them. No guest runs: the tests drive the devices through the buses as a driver would.
add_executable(virtio_unit_tests
  ${CMAKE_CURRENT_LIST_DIR}/virtio_test_driver.cpp
  ${CMAKE_CURRENT_LIST_DIR}/virtio_pci_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/virtio_queue_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/virtio_blk_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/virtio_console_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/virtio_state_test.cpp)
target_compile_options(virtio_unit_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(virtio_unit_tests PRIVATE nvhv_devices nvhv_test_support GTest::gtest_main)
nvhv_discover_tests(virtio_unit_tests LABELS unit virtio PREFIX "virtio." TIMEOUT 120)
