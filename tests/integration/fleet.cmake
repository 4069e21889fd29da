# The host registry, `nvhvctl fleet` and nvhv under systemd (docs/fleet.md, docs/systemd.md), on
# real testos VMs, real sockets and a real `cmake --install`.
foreach(_fleet_test registry power systemd)
  set(_target nvhv_fleet_${_fleet_test}_tests)
  add_executable(${_target} ${CMAKE_CURRENT_LIST_DIR}/fleet_${_fleet_test}_test.cpp)
  target_compile_options(${_target} PRIVATE ${NVHV_WARNINGS})
  target_link_libraries(${_target} PRIVATE nvhv_test_support nlohmann_json::nlohmann_json GTest::gtest_main)
  add_dependencies(${_target} nvhv nvhvctl testos)
  nvhv_discover_tests(${_target} PREFIX "fleet.${_fleet_test}." LABELS integration kvm fleet SERIAL TIMEOUT 300)
endforeach()
