# Install rules: the shared and static libraries, the public header, a CMake
# package (find_package(memmamba CONFIG)) and a pkg-config file.
#
#   <prefix>/include/memmamba/memmamba.h
#   <prefix>/<libdir>/libmemmamba.so.<version>, .so.<major>, .so, libmemmamba.a
#   <prefix>/<libdir>/cmake/memmamba/memmambaConfig.cmake (+ Version, targets)
#   <prefix>/<libdir>/pkgconfig/memmamba.pc
#
# The shared library carries everything it needs (abseil and OpenBLAS are
# linked into it, OpenBLAS through a run path to the OpenMP flavour), so its
# users need only the header and -lmemmamba. The static archive leaves its
# dependencies to the final link: the CMake package names them as imported
# targets (found again on the user's machine), memmamba.pc as Libs.private /
# Requires.private.
include(CMakePackageConfigHelpers)

set(MM_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/memmamba" CACHE STRING
    "Where memmambaConfig.cmake is installed, relative to the prefix")
mark_as_advanced(MM_INSTALL_CMAKEDIR)

# A program linking the static archive needs the same OpenMP flavour of
# OpenBLAS at run time as the shared library pins with its run path.
target_link_options(memmamba_static INTERFACE
  "$<INSTALL_INTERFACE:LINKER:-rpath,${MM_OPENBLAS_DIR}>")

install(TARGETS memmamba EXPORT memmambaTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# A separate export set: the static target's link interface names abseil,
# OpenMP and Threads targets, which memmambaConfig.cmake only looks for when
# the static library is wanted, so that users of the shared library need none
# of them.
install(TARGETS memmamba_static EXPORT memmambaStaticTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/memmamba/memmamba.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/memmamba)

install(EXPORT memmambaTargets NAMESPACE memmamba::
  FILE memmambaTargets.cmake DESTINATION ${MM_INSTALL_CMAKEDIR})
install(EXPORT memmambaStaticTargets NAMESPACE memmamba::
  FILE memmambaStaticTargets.cmake DESTINATION ${MM_INSTALL_CMAKEDIR})

configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/memmambaConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/memmambaConfig.cmake
  INSTALL_DESTINATION ${MM_INSTALL_CMAKEDIR})
# 0.x releases may break the API between minor versions: only the same
# major.minor is compatible until 1.0, then the same major.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(mm_compatibility SameMinorVersion)
else()
  set(mm_compatibility SameMajorVersion)
endif()
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/cmake/memmambaConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY ${mm_compatibility})
install(FILES
  ${PROJECT_BINARY_DIR}/cmake/memmambaConfig.cmake
  ${PROJECT_BINARY_DIR}/cmake/memmambaConfigVersion.cmake
  DESTINATION ${MM_INSTALL_CMAKEDIR})

# pkg-config. The file locates the prefix from its own directory
# (${pcfiledir}), so the installed tree stays valid when it is installed
# with `cmake --install --prefix`, moved, or unpacked elsewhere.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(MM_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(MM_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(MM_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
else()
  file(RELATIVE_PATH mm_pc_up "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
  string(REGEX REPLACE "/$" "" mm_pc_up "${mm_pc_up}")
  set(MM_PC_PREFIX "\${pcfiledir}/${mm_pc_up}")
  set(MM_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(MM_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
# The static archive's own dependencies: abseil through its pkg-config
# modules, OpenBLAS (the OpenMP flavour, by path, with its run path), OpenMP
# and the C++ runtime (the archive is C++; a C program links it with cc).
set(MM_PC_REQUIRES_PRIVATE "absl_status absl_statusor absl_strings absl_str_format absl_cord")
set(MM_PC_LIBS_PRIVATE
  "${MM_OPENBLAS_LIBRARY} -Wl,-rpath,${MM_OPENBLAS_DIR} -fopenmp -lstdc++ -lm -pthread")
configure_file(${CMAKE_CURRENT_LIST_DIR}/memmamba.pc.in
  ${PROJECT_BINARY_DIR}/cmake/memmamba.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/cmake/memmamba.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
