# packaging.cmake — install rules and the Debian package (included by the
# top CMakeLists.txt).
#
#   cmake --install build --prefix P          P/bin, P/etc/moongate, P/share/...
#   cpack --config build/CPackConfig.cmake    moongate_<version>_<arch>.deb
#
# Layout (GNUInstallDirs; a prefix of /usr puts the config in /etc):
#   bin/moongate, bin/moongate-cat
#   bin/moongate-admin                    tools/moongate-admin (sh + curl + python3)
#   etc/moongate/moongate.yaml            the default config, naming the files below
#   etc/logrotate.d/moongate              packaging/moongate.logrotate, for log.file
#   share/moongate/scripts/app.lua        the default app (scripts/)
#   share/moongate/static/index.html      its page (static/)
#   share/doc/moongate/                   README.md, docs/*.md, moongate-cat.md
#   share/doc/moongate/examples/monitoring/  Prometheus alerts, Grafana dashboard
#   share/man/man8/moongate.8             man/moongate.8
#   lib/systemd/system/moongate.service   packaging/moongate.service.in
include(GNUInstallDirs)

set(MOONGATE_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "where moongate.service is installed (relative to the prefix, or absolute)")
set(MOONGATE_MAINTAINER "moongate maintainers <maintainers@moongate.invalid>" CACHE STRING
    "the Debian package's Maintainer field")

install(TARGETS moongate moongate-cat RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The admin API from a shell: a /bin/sh script that runs curl and
# /usr/bin/python3 (the package Recommends both).
install(PROGRAMS ${CMAKE_SOURCE_DIR}/tools/moongate-admin DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/scripts ${CMAKE_SOURCE_DIR}/static
        DESTINATION ${CMAKE_INSTALL_DATADIR}/moongate)
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/docs/operations.md
              ${CMAKE_SOURCE_DIR}/docs/lua-api.md ${CMAKE_SOURCE_DIR}/docs/testing.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${CMAKE_SOURCE_DIR}/client/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR}
        RENAME moongate-cat.md)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/examples/monitoring
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES ${CMAKE_SOURCE_DIR}/man/moongate.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
# The config, the logrotate snippet and the unit name installed paths: written at install time,
# with that install's prefix (packaging/install-generated.cmake).
install(CODE "
  set(MG_SRC \"${CMAKE_SOURCE_DIR}\")
  set(MG_GEN \"${CMAKE_BINARY_DIR}/packaging\")
  set(MG_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(MG_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
  set(MG_DATADIR \"${CMAKE_INSTALL_DATADIR}\")
  set(MG_DOCDIR \"${CMAKE_INSTALL_DOCDIR}\")
  set(MG_UNITDIR \"${MOONGATE_SYSTEMD_UNITDIR}\")
  include(\"${CMAKE_SOURCE_DIR}/packaging/install-generated.cmake\")
")

# ---- the Debian package ----
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "moongate")
set(CPACK_PACKAGE_VERSION "${MOONGATE_VERSION}")
set(CPACK_PACKAGE_CONTACT "${MOONGATE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Lua-scriptable WebSocket gateway")
# Installed as on the target: DESTDIR staging with the real prefix, so the
# config and the unit name /usr/bin, /etc/moongate, /usr/share/moongate.
set(CPACK_SET_DESTDIR ON)
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${MOONGATE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# The synopsis line is CPACK_PACKAGE_DESCRIPTION_SUMMARY; this is the body.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "moongate accepts WebSocket clients (ws:// and wss://) and hands their\n"
    "connections and messages to a Lua script: echo, chat rooms, pub/sub\n"
    "topics, RabbitMQ task dispatch.  It reloads config and script without\n"
    "dropping connections, and has an admin endpoint with Prometheus metrics.\n"
    "The package holds the gateway, moongate-cat (a command-line client),\n"
    "moongate-admin (the admin API from a shell), a default config in\n"
    "/etc/moongate, a systemd unit and a logrotate snippet.")
string(REPLACE ";" "" CPACK_DEBIAN_PACKAGE_DESCRIPTION "${CPACK_DEBIAN_PACKAGE_DESCRIPTION}")
# Depends: the shared libraries' packages (dpkg-shlibdeps, from dpkg-dev),
# plus what is loaded at run time rather than linked: gw.json's lua-cjson,
# and adduser for the postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "lua-cjson, adduser")
# moongate-admin runs curl (--fail-with-body: 7.76 or later) and
# /usr/bin/python3 (JSON and URL escaping); the gateway needs neither, hence
# Recommends.  The logrotate snippet only matters with log.file set.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "curl (>= 7.76), python3")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "logrotate")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
configure_file(${CMAKE_SOURCE_DIR}/packaging/debian/conffiles
               ${CMAKE_BINARY_DIR}/packaging/debian/conffiles COPYONLY)
foreach(script postinst prerm postrm)
  file(COPY ${CMAKE_SOURCE_DIR}/packaging/debian/${script}
       DESTINATION ${CMAKE_BINARY_DIR}/packaging/debian
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                        WORLD_READ WORLD_EXECUTE)
endforeach()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_BINARY_DIR}/packaging/debian/conffiles ${CMAKE_BINARY_DIR}/packaging/debian/postinst
    ${CMAKE_BINARY_DIR}/packaging/debian/prerm ${CMAKE_BINARY_DIR}/packaging/debian/postrm)
include(CPack)
