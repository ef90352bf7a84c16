# libFuzzer targets for the training config parser (fuzz_config.cpp) and the model-file loader
# (fuzz_model.cpp), built only with -DPW_FUZZ=ON and clang, like fuzz_nifti (tests/io/tests.cmake).
# The io, kernels, engine and train sources are compiled once, instrumented (ASan + UBSan + coverage),
# into an object library that both targets link, so that the parsers themselves are fuzzed.
# make_model_seeds (a plain program on the same objects) regenerates tests/fuzz/model-seeds/.
# scripts/fuzz.sh builds them in build-fuzz/ and runs each for the given time.
if(PW_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(WARNING "PW_FUZZ=ON needs clang (CXX=clang++): the config and model fuzz targets are not built")
  else()
    file(GLOB _pw_fuzz_src CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/io/*.cpp ${CMAKE_SOURCE_DIR}/kernels/*.cpp
         ${CMAKE_SOURCE_DIR}/kernels/cpu/*.cpp ${CMAKE_SOURCE_DIR}/engine/*.cpp ${CMAKE_SOURCE_DIR}/train/*.cpp)
    list(FILTER _pw_fuzz_src EXCLUDE REGEX ".*/main\\.cpp$")
    add_library(pw_fuzz_objs OBJECT ${_pw_fuzz_src})
    target_include_directories(pw_fuzz_objs PUBLIC ${CMAKE_SOURCE_DIR})
    target_link_libraries(pw_fuzz_objs PUBLIC Threads::Threads ZLIB::ZLIB Eigen3::Eigen nlohmann_json::nlohmann_json)
    target_compile_options(pw_fuzz_objs PUBLIC -g -O1 -fsanitize=fuzzer-no-link,address,undefined
                                                -fno-sanitize-recover=undefined)
    foreach(_t config model)
      add_executable(fuzz_${_t} ${CMAKE_CURRENT_LIST_DIR}/fuzz_${_t}.cpp)
      target_link_libraries(fuzz_${_t} PRIVATE pw_fuzz_objs)
      target_compile_options(fuzz_${_t} PRIVATE -fsanitize=fuzzer)
      target_link_options(fuzz_${_t} PRIVATE -fsanitize=fuzzer,address,undefined)
    endforeach()
    add_executable(make_model_seeds ${CMAKE_CURRENT_LIST_DIR}/make_model_seeds.cpp)
    target_link_libraries(make_model_seeds PRIVATE pw_fuzz_objs)
    target_link_options(make_model_seeds PRIVATE -fsanitize=address,undefined)

    # Short smoke runs (10 s each) seeded with the committed seeds as part of ctest; new inputs go to a
    # writable folder (the first one given), the seed folders are only read.
    file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/fuzz-config-smoke-corpus
                        ${CMAKE_CURRENT_BINARY_DIR}/fuzz-model-smoke-corpus)
    add_test(NAME train_config_fuzz_smoke
             COMMAND fuzz_config -max_total_time=10 -rss_limit_mb=2048 -timeout=10
                     ${CMAKE_CURRENT_BINARY_DIR}/fuzz-config-smoke-corpus ${CMAKE_CURRENT_LIST_DIR}/config-seeds
                     ${CMAKE_SOURCE_DIR}/examples)
    add_test(NAME train_model_fuzz_smoke
             COMMAND fuzz_model -max_total_time=10 -rss_limit_mb=2048 -timeout=10
                     ${CMAKE_CURRENT_BINARY_DIR}/fuzz-model-smoke-corpus ${CMAKE_CURRENT_LIST_DIR}/model-seeds)
  endif()
endif()
