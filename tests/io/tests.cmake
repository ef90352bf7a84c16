# libFuzzer target for the NIfTI reader (tests/io/fuzz/fuzz_nifti.cpp), built only with -DPW_FUZZ=ON and
# clang. The io sources are compiled into it directly so that the parser itself is instrumented.
# scripts/fuzz.sh builds it in its own folder and runs it for about a minute, seeded with the corpus.
if(PW_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(WARNING "PW_FUZZ=ON needs clang (CXX=clang++): the fuzz targets are not built")
  else()
    file(GLOB _pw_io_src CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/io/*.cpp)
    add_executable(fuzz_nifti ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_nifti.cpp ${_pw_io_src})
    target_include_directories(fuzz_nifti PRIVATE ${CMAKE_SOURCE_DIR})
    target_link_libraries(fuzz_nifti PRIVATE ZLIB::ZLIB Eigen3::Eigen)
    target_compile_options(fuzz_nifti PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
    target_link_options(fuzz_nifti PRIVATE -fsanitize=fuzzer,address,undefined)
    # A short smoke run (10 s) seeded with the corpus as part of ctest; new inputs go to a writable folder
    # (the first one given), the corpus in tests/data/ is only read.
    file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/fuzz-smoke-corpus)
    add_test(NAME io_fuzz_smoke
             COMMAND fuzz_nifti -max_total_time=10 -rss_limit_mb=2048 -timeout=10
                     ${CMAKE_CURRENT_BINARY_DIR}/fuzz-smoke-corpus ${PW_TEST_DATA_DIR}/nifti-corpus)
  endif()
endif()

# `patchwork convert` checked by nibabel, an independent reader (skipped, exit 77, without python3-nibabel).
# Debian's interpreter first: scripts/setup.sh installs python3-nibabel for it.
find_program(PW_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT PW_PYTHON3)
  find_program(PW_PYTHON3 python3)
endif()
if(PW_PYTHON3)
  add_test(NAME io_convert_nibabel
           COMMAND ${PW_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/nibabel_convert_check.py $<TARGET_FILE:patchwork>
                   ${PW_TEST_DATA_DIR})
  set_tests_properties(io_convert_nibabel PROPERTIES SKIP_RETURN_CODE 77)
endif()
