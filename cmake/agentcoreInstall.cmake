include(CMakePackageConfigHelpers)

set(AGENTCORE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/agentcore CACHE STRING
    "Where agentcore's CMake package files are installed, relative to the prefix")

install(TARGETS agentcore EXPORT agentcoreTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/agentcore DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET agentcore-cli)
  install(TARGETS agentcore-cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(EXPORT agentcoreTargets NAMESPACE agentcore:: DESTINATION ${AGENTCORE_CMAKE_DIR})
# A build-tree export too, as fmt has: a consumer can point agentcore_DIR at the build.
export(EXPORT agentcoreTargets NAMESPACE agentcore::
       FILE ${PROJECT_BINARY_DIR}/agentcoreTargets.cmake)

configure_package_config_file(cmake/agentcoreConfig.cmake.in
  ${PROJECT_BINARY_DIR}/agentcoreConfig.cmake
  INSTALL_DESTINATION ${AGENTCORE_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/agentcoreConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/agentcoreConfig.cmake
              ${PROJECT_BINARY_DIR}/agentcoreConfigVersion.cmake
        DESTINATION ${AGENTCORE_CMAKE_DIR})

# pkg-config: the prefix is written in at configure time; relocating the
# install tree means passing --define-prefix to pkg-config.
configure_file(cmake/agentcore.pc.in ${PROJECT_BINARY_DIR}/agentcore.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/agentcore.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
