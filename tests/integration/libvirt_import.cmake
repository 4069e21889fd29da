# nvhv import-libvirt end to end: a libvirt domain describing testos (RAM in a file-backed
# nvdimm) imported, run, power-failed and resumed by the real nvhv on KVM.
add_executable(libvirt_import_integration_tests ${CMAKE_CURRENT_LIST_DIR}/libvirt_import_test.cpp)
target_compile_options(libvirt_import_integration_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(libvirt_import_integration_tests PRIVATE nvhv_test_support nlohmann_json::nlohmann_json GTest::gtest_main)
add_dependencies(libvirt_import_integration_tests nvhv testos)
nvhv_discover_tests(libvirt_import_integration_tests LABELS integration kvm import PREFIX "import." SERIAL TIMEOUT 120)
