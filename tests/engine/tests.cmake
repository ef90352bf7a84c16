# A CUDA build's CPU commands load no CUDA library (cuda_not_loaded.sh, with the LD_PRELOAD helper
# maps_at_exit.c that writes the process's memory map at exit, and a stand-in driver library,
# fake_libcuda.c, that reports a GPU). CUDA builds only: that is where the libraries exist.
if(PW_HAVE_CUDA)
  add_library(pw_maps_at_exit MODULE ${CMAKE_CURRENT_LIST_DIR}/maps_at_exit.c)
  add_library(pw_fake_libcuda MODULE ${CMAKE_CURRENT_LIST_DIR}/fake_libcuda.c)
  set_target_properties(pw_fake_libcuda PROPERTIES OUTPUT_NAME cuda PREFIX lib SUFFIX .so.1
                                                   LIBRARY_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/fake-driver)
  add_test(NAME engine_cuda_not_loaded
           COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/cuda_not_loaded.sh $<TARGET_FILE:patchwork>
                   $<TARGET_FILE:pw_maps_at_exit> $<TARGET_FILE_DIR:pw_fake_libcuda>
                   ${PW_TEST_DATA_DIR}/nifti-corpus/dt_uint8_le.nii)
endif()
