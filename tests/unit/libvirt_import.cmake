# nvhv import-libvirt (docs/import-libvirt.md): the mapping on fixtures modelled on libvirt's
# documented domain XML (tests/data/libvirt/) and every refusal, through the library and the
# real nvhv binary. No KVM needed.
add_executable(libvirt_import_unit_tests
  ${CMAKE_CURRENT_LIST_DIR}/libvirt_import_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/libvirt_import_errors_test.cpp)
target_compile_options(libvirt_import_unit_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(libvirt_import_unit_tests PRIVATE nvhv_vmm nvhv_test_support GTest::gtest_main)
add_dependencies(libvirt_import_unit_tests nvhv)
nvhv_discover_tests(libvirt_import_unit_tests LABELS unit import PREFIX "import." TIMEOUT 60)
