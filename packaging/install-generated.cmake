# install-generated.cmake — run by `cmake --install` and cpack (install(CODE)
# in packaging/packaging.cmake): writes the files that name installed paths,
# with the prefix of THIS install (`--prefix P`, or cpack's /usr), which
# configure time cannot know:
#   <sysconf>/moongate/moongate.yaml   conf/moongate.yaml, its script,
#                                      lua.path and static.root made absolute
#                                      pid_file set to /run/moongate/moongate.pid
#                                      (an existing one is kept: .dist beside it)
#   <sysconf>/logrotate.d/moongate     packaging/moongate.logrotate, naming this
#                                      install's moongate and config (kept too:
#                                      .dpkg-dist beside it)
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

# mg_edit(var what FROM TO [FROM TO ...]): replace each FROM by its TO in
# the variable named var.  Every edit must apply: a changed line in the
# source (what) fails the install rather than installing a file that points
# nowhere.
function(mg_edit var what)
  set(text "${${var}}")
  math(EXPR last "${ARGC} - 1")
  foreach(i RANGE 2 ${last} 2)
    math(EXPR j "${i} + 1")
    string(FIND "${text}" "${ARGV${i}}" at)
    if(at LESS 0)
      message(FATAL_ERROR "${what} has no '${ARGV${i}}' any more: "
                          "update packaging/install-generated.cmake")
    endif()
    string(REPLACE "${ARGV${i}}" "${ARGV${j}}" text "${text}")
  endforeach()
  set(${var} "${text}" PARENT_SCOPE)
endfunction()

# mg_install_etc(dir name text suffix): as nginx's `make install` does, an
# operator's file in etc is never overwritten; the new default goes next to
# it as NAME<suffix>.
function(mg_install_etc dir name text suffix)
  file(MAKE_DIRECTORY "${MG_GEN}")
  if(EXISTS "$ENV{DESTDIR}${dir}/${name}")
    set(gen "${MG_GEN}/${name}${suffix}")
    message(STATUS "Keeping: $ENV{DESTDIR}${dir}/${name} (the default is ${name}${suffix})")
  else()
    set(gen "${MG_GEN}/${name}")
  endif()
  file(REMOVE "${MG_GEN}/${name}" "${MG_GEN}/${name}${suffix}")
  file(WRITE "${gen}" "${text}")
  file(INSTALL DESTINATION "${dir}" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
       FILES "${gen}")
endfunction()

# The service story (docs/operations.md, "Install and run as a service"):
# the unit runs moongate as User=moongate with RuntimeDirectory=moongate, so
# the pid file lives in /run/moongate (whatever the prefix: the unit says
# /run); the log goes to stderr, the journal, unless log.file is set (the
# unit's LogsDirectory /var/log/moongate, rotated by logrotate.d/moongate).
set(MG_PID_FILE "/run/moongate/moongate.pid")

# conf/moongate.yaml with its relative paths pointing into MG_DATA, and
# pid_file on, where --signal and the logrotate snippet look.
file(READ "${MG_SRC}/conf/moongate.yaml" conf)
mg_edit(conf "conf/moongate.yaml"
    "script: ../scripts/app.lua" "script: ${MG_DATA}/scripts/app.lua"
    "  path: ../scripts/?.lua" "  path: ${MG_DATA}/scripts/?.lua"
    "  root: ../static " "  root: ${MG_DATA}/static "
    "build/moongate -c conf/moongate.yaml" "moongate -c ${MG_CONFDIR}/moongate.yaml"
    "\n# pid_file: /run/moongate/moongate.pid\n" "\npid_file: ${MG_PID_FILE}\n")
mg_edit(conf "conf/moongate.yaml"
  "# moongate.yaml — the default configuration: an echo + chat-room app.\n"
  "# moongate.yaml — the default configuration: an echo + chat-room app.
#
# Installed copy: script, lua.path and static.root point at ${MG_DATA}
# (the default app and page); point them at your own.  pid_file is on
# (${MG_PID_FILE}, in the systemd unit's RuntimeDirectory), so that
# `moongate -S reload -c ${MG_CONFDIR}/moongate.yaml` (or reopen, quit,
# stop) finds the service.  Run by hand outside the service, /run/moongate
# must exist and be writable (or change pid_file).  The log goes to stderr
# (the journal under systemd); log.file (commented below) writes to
# /var/log/moongate instead, which ${MG_ETC}/logrotate.d/moongate
# rotates.  user:/group: are not needed under the unit (it starts as
# User=moongate); they are for a start as root without systemd.
")
mg_install_etc("${MG_CONFDIR}" "moongate.yaml" "${conf}" ".dist")

# The logrotate snippet, naming this install's moongate and config (the log
# folder is the unit's LogsDirectory, /var/log/moongate, whatever the prefix).
file(READ "${MG_SRC}/packaging/moongate.logrotate" rot)
mg_edit(rot "packaging/moongate.logrotate"
    "/usr/bin/moongate --signal reopen" "${MG_BIN}/moongate --signal reopen"
    "-c /etc/moongate/moongate.yaml" "-c ${MG_CONFDIR}/moongate.yaml")
# logrotate reads every file in logrotate.d but those with a "taboo"
# extension: a moongate.dist would be a second snippet for the same logs (a
# duplicate-entry error); .dpkg-dist is on its list, and means the same.
mg_install_etc("${MG_ETC}/logrotate.d" "moongate" "${rot}" ".dpkg-dist")

set(MG_BINDIR "${MG_BIN}")
set(MG_DOCDIR "${MG_DOC}")
# The unit names the same pid_file (in a comment; RuntimeDirectory is its folder).
configure_file("${MG_SRC}/packaging/moongate.service.in" "${MG_GEN}/moongate.service" @ONLY)
file(INSTALL DESTINATION "${MG_UNIT}" TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${MG_GEN}/moongate.service")
