# PW_CUDA=AUTO|ON|OFF. AUTO enables the backend when nvcc, cuDNN and cuBLAS are all found
# (through CUDA_HOME or nvcc on the PATH); ON fails here, at configure time, when any is missing.
set(PW_HAVE_CUDA OFF)
if(NOT PW_CUDA STREQUAL "OFF")
  set(_pw_cuda_missing "")
  if(DEFINED ENV{CUDA_HOME} AND NOT CMAKE_CUDA_COMPILER AND EXISTS "$ENV{CUDA_HOME}/bin/nvcc")
    set(CMAKE_CUDA_COMPILER "$ENV{CUDA_HOME}/bin/nvcc")
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    list(APPEND _pw_cuda_missing "nvcc")
  else()
    find_package(CUDAToolkit QUIET)
    if(NOT CUDAToolkit_FOUND)
      list(APPEND _pw_cuda_missing "CUDA toolkit")
    endif()
    if(NOT TARGET CUDA::cublas)
      list(APPEND _pw_cuda_missing "cuBLAS")
    endif()
    find_path(CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{CUDA_HOME}/include $ENV{CUDNN_HOME}/include)
    find_library(CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{CUDA_HOME}/lib64 $ENV{CUDNN_HOME}/lib64 $ENV{CUDNN_HOME}/lib)
    if(NOT CUDNN_INCLUDE_DIR OR NOT CUDNN_LIBRARY)
      list(APPEND _pw_cuda_missing "cuDNN (cudnn.h / libcudnn)")
    endif()
  endif()
  if(_pw_cuda_missing)
    if(PW_CUDA STREQUAL "ON")
      message(FATAL_ERROR "PW_CUDA=ON but these are missing: ${_pw_cuda_missing}. "
                          "Install them, set CUDA_HOME, or configure with -DPW_CUDA=OFF.")
    endif()
    message(STATUS "Patchwork: CUDA backend off (missing: ${_pw_cuda_missing})")
  else()
    if(NOT CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "80-real;90-real;90-virtual")
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    add_library(pw_cudnn UNKNOWN IMPORTED)
    set_target_properties(pw_cudnn PROPERTIES IMPORTED_LOCATION "${CUDNN_LIBRARY}"
                                              INTERFACE_INCLUDE_DIRECTORIES "${CUDNN_INCLUDE_DIR}")
    set(PW_HAVE_CUDA ON)
    message(STATUS "Patchwork: CUDA backend on (${CMAKE_CUDA_COMPILER}, archs ${CMAKE_CUDA_ARCHITECTURES}, cuDNN ${CUDNN_LIBRARY})")
  endif()
endif()
if(PW_HAVE_CUDA)
  target_compile_definitions(pw_options INTERFACE PW_HAVE_CUDA=1)
  target_compile_options(pw_options INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -O3>)
endif()

# pw_add_library(NAME DIR [DEPS...]): one static library per top-level folder, from DIR/*.cpp and
# DIR/cpu/*.cpp. DIR/cuda/ (kernels, engine) goes into the CUDA plugin instead (pw_add_cuda_plugin).
function(pw_add_library name dir)
  file(GLOB _src CONFIGURE_DEPENDS ${dir}/*.cpp ${dir}/cpu/*.cpp)
  list(FILTER _src EXCLUDE REGEX ".*/main\\.cpp$")
  if(NOT _src)  # a folder with no sources yet: headers only
    add_library(${name} INTERFACE)
    target_link_libraries(${name} INTERFACE pw_options ${ARGN})
    return()
  endif()
  add_library(${name} STATIC ${_src})
  target_link_libraries(${name} PUBLIC pw_options ${ARGN})
endfunction()

# pw_add_cuda_plugin(): the CUDA backend, kernels/cuda/ and engine/cuda/, as one shared library
# (libpatchwork_cuda.so, in <build>/lib and the install libdir) that the engine loads with dlopen() on
# the first use of a CUDA device (engine/cuda_backend.h). Only it links the CUDA runtime, cuBLAS and
# cuDNN; it exports one function (engine/cuda/exports.map). Building pw_engine builds it.
function(pw_add_cuda_plugin)
  file(GLOB _src CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/cuda/*.cu ${PROJECT_SOURCE_DIR}/kernels/cuda/*.cpp
       ${PROJECT_SOURCE_DIR}/engine/cuda/*.cpp)
  add_library(pw_cuda MODULE ${_src})
  set_target_properties(pw_cuda PROPERTIES OUTPUT_NAME patchwork_cuda CUDA_SEPARABLE_COMPILATION OFF
                                           LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/lib)
  target_link_libraries(pw_cuda PRIVATE pw_kernels CUDA::cudart CUDA::cublas pw_cudnn)
  set(_map ${PROJECT_SOURCE_DIR}/engine/cuda/exports.map)
  target_link_options(pw_cuda PRIVATE -Wl,--no-undefined -Wl,--version-script=${_map})
  set_property(TARGET pw_cuda APPEND PROPERTY LINK_DEPENDS ${_map})
  add_dependencies(pw_engine pw_cuda)
  install(TARGETS pw_cuda LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  # The plugin's interface (engine/cuda_backend.h, installed with engine/) and the controls need these.
  foreach(dir kernels engine)
    install(FILES ${PROJECT_SOURCE_DIR}/${dir}/cuda/runtime.h
            DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/patchwork/${dir}/cuda)
  endforeach()
endfunction()
