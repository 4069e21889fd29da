# nvhv_add_fuzzer(NAME <name> SOURCES <src>... [LIBS <-lfoo>...] [SECONDS <n>])
#
# The project builds with g++, but libFuzzer comes with clang: so each fuzzer is compiled
# by clang++ directly from its sources into build/fuzz/<name>, with ASan and UBSan, and a
# ctest "fuzz.<name>" (label "fuzz") runs it for a bounded time on a scratch corpus seeded
# from tests/fuzz/corpus/<name>/ when that exists.
find_program(NVHV_CLANGXX NAMES clang++ clang++-14)
set(NVHV_FUZZ_SECONDS 20 CACHE STRING "Seconds each fuzzer runs in the test suite")

function(nvhv_add_fuzzer)
  cmake_parse_arguments(F "" "NAME;SECONDS" "SOURCES;LIBS" ${ARGN})
  if(NOT NVHV_CLANGXX)
    message(WARNING "clang++ not found: fuzzer ${F_NAME} is not built")
    return()
  endif()
  if(NOT F_SECONDS)
    set(F_SECONDS ${NVHV_FUZZ_SECONDS})
  endif()
  set(out ${CMAKE_BINARY_DIR}/fuzz/${F_NAME})
  set(srcs "")
  foreach(s IN LISTS F_SOURCES)
    list(APPEND srcs ${PROJECT_SOURCE_DIR}/${s})
  endforeach()
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/fuzz
    COMMAND ${NVHV_CLANGXX} -std=c++20 -O1 -g -fno-omit-frame-pointer
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -I${PROJECT_SOURCE_DIR} ${srcs} -o ${out} ${F_LIBS} -lpthread
    DEPENDS ${srcs}
    COMMENT "clang++ libFuzzer target ${F_NAME}"
    VERBATIM)
  add_custom_target(fuzz_${F_NAME} ALL DEPENDS ${out})
  set(corpus ${CMAKE_BINARY_DIR}/fuzz/${F_NAME}.corpus)
  set(seeds ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${F_NAME})
  add_test(NAME fuzz.${F_NAME}
    COMMAND sh -c "mkdir -p '${corpus}' && { [ ! -d '${seeds}' ] || cp -r '${seeds}'/. '${corpus}'/; } && exec '${out}' -max_total_time=${F_SECONDS} -rss_limit_mb=2048 -print_final_stats=1 '${corpus}'")
  set_tests_properties(fuzz.${F_NAME} PROPERTIES LABELS fuzz TIMEOUT 600)
endfunction()
