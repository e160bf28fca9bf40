# install.cmake — headers, both libraries, the tool, a pkg-config file and a CMake package.
include(CMakePackageConfigHelpers)

install(DIRECTORY include/hostmem DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS hostmem hostmem_static EXPORT hostmemTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS hostmem_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS hostmem_malloc LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})

install(EXPORT hostmemTargets NAMESPACE hostmem:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hostmem)
configure_package_config_file(cmake/hostmemConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/hostmemConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hostmem)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/hostmemConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/hostmemConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/hostmemConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hostmem)

configure_file(cmake/hostmem.pc.in ${CMAKE_CURRENT_BINARY_DIR}/hostmem.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/hostmem.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
configure_file(cmake/hostmem-malloc.pc.in ${CMAKE_CURRENT_BINARY_DIR}/hostmem-malloc.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/hostmem-malloc.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
