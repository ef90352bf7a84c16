include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(TARGETS patchwork RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS pw_options pw_io pw_kernels pw_engine pw_train pw_apply
        EXPORT patchworkTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
foreach(dir io kernels kernels/common engine train apply)
  file(GLOB _hdrs ${CMAKE_SOURCE_DIR}/${dir}/*.h)
  install(FILES ${_hdrs} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/patchwork/${dir})
endforeach()
install(EXPORT patchworkTargets NAMESPACE patchwork:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/patchwork)
file(WRITE ${CMAKE_BINARY_DIR}/patchworkConfig.cmake.in [=[
@PACKAGE_INIT@
include(CMakeFindDependencyMacro)
find_dependency(Threads)
find_dependency(ZLIB)
find_dependency(Eigen3 NO_MODULE)
find_dependency(nlohmann_json)
@PW_MPI_DEPENDENCY@
include("${CMAKE_CURRENT_LIST_DIR}/patchworkTargets.cmake")
]=])
set(PW_MPI_DEPENDENCY "")
if(PW_HAVE_MPI)
  set(PW_MPI_DEPENDENCY "find_dependency(MPI COMPONENTS C)")
endif()
configure_package_config_file(${CMAKE_BINARY_DIR}/patchworkConfig.cmake.in
  ${CMAKE_BINARY_DIR}/patchworkConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/patchwork)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/patchworkConfigVersion.cmake COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/patchworkConfig.cmake ${CMAKE_BINARY_DIR}/patchworkConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/patchwork)
