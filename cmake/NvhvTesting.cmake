# nvhv_discover_tests(<target> LABELS <l>... [SERIAL] [TIMEOUT <s>] [PREFIX <p>])
#
# gtest_discover_tests with several labels: its PROPERTIES argument splits list values (CMake
# 3.25 writes "LABELS integration kvm", making "kvm" a property name), so the labels and other
# properties are applied by a test include file that runs after discovery.
function(nvhv_discover_tests target)
  cmake_parse_arguments(T "SERIAL" "TIMEOUT;PREFIX" "LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set(list_var ${target}_TESTS)
  gtest_discover_tests(${target} TEST_PREFIX "${T_PREFIX}" TEST_LIST ${list_var} DISCOVERY_TIMEOUT 60)
  set(props "LABELS \"${T_LABELS}\" TIMEOUT ${T_TIMEOUT}")
  if(T_SERIAL)
    string(APPEND props " RUN_SERIAL TRUE")
  endif()
  set(file ${CMAKE_CURRENT_BINARY_DIR}/${target}_properties.cmake)
  file(WRITE ${file} "if(${list_var})\n  set_tests_properties(\${${list_var}} PROPERTIES ${props})\nendif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${file})
endfunction()
