# install-generated.cmake — run by `cmake --install` and cpack (install(CODE)
# in packaging/packaging.cmake): writes the files that name installed paths,
# with the prefix of THIS install (`--prefix P`, or cpack's /usr), which
# configure time cannot know:
#   <sysconf>/moongate/moongate.yaml   conf/moongate.yaml, its script,
#                                      lua.path and static.root made absolute
#                                      (an existing one is kept: .dist beside it)
#   lib/systemd/system/moongate.service   packaging/moongate.service.in
# Set by the caller: MG_SRC (source dir), MG_GEN (scratch dir), and the
# GNUInstallDirs values MG_BINDIR, MG_SYSCONFDIR, MG_DATADIR, MG_DOCDIR,
# MG_UNITDIR (relative to the prefix, or absolute).

# GNUInstallDirs' rule, applied to the install-time prefix: under / or /usr
# the config goes to /etc, elsewhere to PREFIX/etc.
function(mg_dir out rel)
  if(IS_ABSOLUTE "${rel}")
    set(dir "${rel}")
  elseif(rel STREQUAL "etc" AND CMAKE_INSTALL_PREFIX MATCHES "^/(usr/?)?$")
    set(dir "/etc")
  else()
    set(dir "${CMAKE_INSTALL_PREFIX}/${rel}")
  endif()
  string(REGEX REPLACE "//+" "/" dir "${dir}")
  set(${out} "${dir}" PARENT_SCOPE)
endfunction()

mg_dir(MG_BIN "${MG_BINDIR}")
mg_dir(MG_ETC "${MG_SYSCONFDIR}")
mg_dir(MG_SHARE "${MG_DATADIR}")
mg_dir(MG_DOC "${MG_DOCDIR}")
mg_dir(MG_UNIT "${MG_UNITDIR}")
set(MG_CONFDIR "${MG_ETC}/moongate")
set(MG_DATA "${MG_SHARE}/moongate")

# conf/moongate.yaml with its relative paths pointing into MG_DATA.  Every
# edit must apply: a changed line in conf/ fails the install rather than
# installing a config that points nowhere.
file(READ "${MG_SRC}/conf/moongate.yaml" conf)
foreach(pair
    "script: ../scripts/app.lua|script: ${MG_DATA}/scripts/app.lua"
    "  path: ../scripts/?.lua|  path: ${MG_DATA}/scripts/?.lua"
    "  root: ../static |  root: ${MG_DATA}/static "
    "build/moongate -c conf/moongate.yaml|moongate -c ${MG_CONFDIR}/moongate.yaml")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 from)
  list(GET pair 1 to)
  string(FIND "${conf}" "${from}" at)
  if(at LESS 0)
    message(FATAL_ERROR "conf/moongate.yaml has no '${from}' any more: "
                        "update packaging/install-generated.cmake")
  endif()
  string(REPLACE "${from}" "${to}" conf "${conf}")
endforeach()
string(REPLACE "# moongate.yaml — the default configuration: an echo + chat-room app.\n"
  "# moongate.yaml — the default configuration: an echo + chat-room app.\n#\n# Installed copy: script, lua.path and static.root point at ${MG_DATA}\n# (the default app and page); point them at your own.\n"
  conf "${conf}")
file(MAKE_DIRECTORY "${MG_GEN}")
file(WRITE "${MG_GEN}/moongate.yaml" "${conf}")
# As nginx's `make install` does: an operator's config is never overwritten;
# the new default goes next to it as moongate.yaml.dist.
if(EXISTS "$ENV{DESTDIR}${MG_CONFDIR}/moongate.yaml")
  file(RENAME "${MG_GEN}/moongate.yaml" "${MG_GEN}/moongate.yaml.dist")
  message(STATUS "Keeping: $ENV{DESTDIR}${MG_CONFDIR}/moongate.yaml (the default is moongate.yaml.dist)")
  set(conf_file "${MG_GEN}/moongate.yaml.dist")
else()
  set(conf_file "${MG_GEN}/moongate.yaml")
endif()
file(INSTALL DESTINATION "${MG_CONFDIR}" TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${conf_file}")

set(MG_BINDIR "${MG_BIN}")
set(MG_DOCDIR "${MG_DOC}")
configure_file("${MG_SRC}/packaging/moongate.service.in" "${MG_GEN}/moongate.service" @ONLY)
file(INSTALL DESTINATION "${MG_UNIT}" TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${MG_GEN}/moongate.service")
