#!/usr/bin/env bash
# tools/lws-build.sh — build libwebsockets 4.3.x from source into a private prefix,
# the way Debian 13 / Ubuntu 24.04 build it, to check moongate against the lws
# those distributions ship (Debian 12 has 4.1.6).  Downloads nothing: give it a
# local git dir of warmcat/libwebsockets (a clone or a bare mirror).
#   tools/lws-build.sh --git-dir DIR --flavour F --prefix PREFIX [--tag v4.3.10] [--jobs 2] [--keep]
#     --flavour debian    Debian's build: CMAKE_BUILD_TYPE=None, dpkg-buildflags CFLAGS
#                         (+CPPFLAGS) and LDFLAGS, shared only, OpenSSL 3, HTTP/2, IPv6,
#                         extensions (zlib), LWS_WITH_EXTERNAL_POLL
#               symbolic  debian + -Wl,-Bsymbolic-functions (lws calls its own exported
#                         functions directly, not through the PLT)
#               lto       symbolic + -flto=auto -ffat-lto-objects (what Ubuntu does)
#     --tag     default v4.3.10, else the newest v4.3.x tag in DIR
#     --prefix  absolute, never /usr; gets PREFIX/lib/libwebsockets.so and
#               PREFIX/lib/pkgconfig/libwebsockets.pc
#     --keep    leave the temporary source/build dir behind (its path is printed)
# Then:  PKG_CONFIG_PATH=PREFIX/lib/pkgconfig cmake -B build-lws43 -S . && cmake --build build-lws43 -j2
set -euo pipefail

die() { echo "lws-build: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit "${1:-0}"; }

git_dir="" tag="" flavour="" prefix="" jobs=2 keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --git-dir) git_dir="${2:?}"; shift 2 ;;
        --tag) tag="${2:?}"; shift 2 ;;
        --flavour|--flavor) flavour="${2:?}"; shift 2 ;;
        --prefix) prefix="${2:?}"; shift 2 ;;
        --jobs|-j) jobs="${2:?}"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "lws-build: unknown argument: $1" >&2; usage 2 ;;
    esac
done
[[ -n "$git_dir" && -n "$flavour" && -n "$prefix" ]] || usage 2
case "$flavour" in debian|symbolic|lto) ;; *) die "--flavour must be debian, symbolic or lto" ;; esac
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive number"
[[ "$prefix" == /* ]] || die "--prefix must be absolute: $prefix"
prefix="${prefix%/}"
case "$prefix" in ""|/usr|/usr/*) die "--prefix must be a private prefix, not ${prefix:-/}" ;; esac

# Build tools and the -dev packages lws links against (Debian only; like tools/deps.sh).
pkgs=(build-essential cmake git pkg-config dpkg-dev libssl-dev zlib1g-dev libcap-dev binutils)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root (or sudo) to install: ${missing[*]}"
        sudo="sudo"
    fi
    echo "lws-build: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

git --git-dir="$git_dir" rev-parse --git-dir >/dev/null 2>&1 || die "not a git dir: $git_dir"
if [[ -z "$tag" ]]; then
    if git --git-dir="$git_dir" rev-parse -q --verify "refs/tags/v4.3.10" >/dev/null; then
        tag=v4.3.10
    else
        tag=$(git --git-dir="$git_dir" tag -l 'v4.3.*' | sort -V | tail -n1)
        [[ -n "$tag" ]] || die "no v4.3.x tag in $git_dir"
    fi
fi
git --git-dir="$git_dir" rev-parse -q --verify "refs/tags/$tag^{commit}" >/dev/null \
    || die "no tag $tag in $git_dir"

work=$(mktemp -d "${TMPDIR:-/tmp}/lws-build.XXXXXX")
if [[ $keep -eq 1 ]]; then
    echo "lws-build: keeping $work" >&2
else
    trap 'rm -rf "$work"' EXIT
fi
src="$work/libwebsockets-${tag#v}"
mkdir -p "$src"
git --git-dir="$git_dir" archive --format=tar "$tag" | tar -x -C "$src"

# Debian's flags, taken in the source dir as a package build would (-ffile-prefix-map).
# dh_auto_configure (cmake) appends CPPFLAGS to CFLAGS, since cmake has no CPPFLAGS.
cflags="$(cd "$src" && dpkg-buildflags --get CFLAGS) $(cd "$src" && dpkg-buildflags --get CPPFLAGS)"
ldflags="$(cd "$src" && dpkg-buildflags --get LDFLAGS)"
case "$flavour" in
    symbolic) ldflags+=" -Wl,-Bsymbolic-functions" ;;
    lto) cflags+=" -flto=auto -ffat-lto-objects"
         ldflags+=" -flto=auto -ffat-lto-objects -Wl,-Bsymbolic-functions" ;;
esac
echo "lws-build: $tag flavour=$flavour prefix=$prefix" >&2
echo "lws-build: CFLAGS=$cflags" >&2
echo "lws-build: LDFLAGS=$ldflags" >&2

opts=(
    -DCMAKE_BUILD_TYPE=None
    -DCMAKE_INSTALL_PREFIX="$prefix"
    -DCMAKE_C_FLAGS="$cflags"
    -DCMAKE_SHARED_LINKER_FLAGS="$ldflags"
    -DCMAKE_MODULE_LINKER_FLAGS="$ldflags"
    -DCMAKE_EXE_LINKER_FLAGS="$ldflags"
    -DLWS_WITH_SHARED=ON -DLWS_WITH_STATIC=OFF
    -DLWS_WITH_SSL=ON                     # OpenSSL (3 on Debian 12/13)
    -DLWS_WITH_HTTP2=ON
    -DLWS_IPV6=ON
    -DLWS_UNIX_SOCK=ON
    -DLWS_WITHOUT_EXTENSIONS=OFF -DLWS_WITH_ZLIB=ON   # permessage-deflate; off, lws stops rejecting RSV1
    -DLWS_WITH_EXTERNAL_POLL=ON
    -DLWS_WITHOUT_TESTAPPS=ON -DLWS_WITHOUT_TEST_SERVER=ON -DLWS_WITHOUT_TEST_SERVER_EXTPOLL=ON
    -DLWS_WITHOUT_TEST_PING=ON -DLWS_WITHOUT_TEST_CLIENT=ON
    -DLWS_WITH_MINIMAL_EXAMPLES=OFF
    # lws runs `git describe` in its source dir for the version suffix; an archive has no
    # .git, and a temp dir inside some other repo would describe that one.  Like a
    # tarball build: the version becomes 4.3.x-unknown.
    -DCMAKE_DISABLE_FIND_PACKAGE_Git=ON
)
cmake -S "$src" -B "$work/build" "${opts[@]}" >"$work/configure.log" 2>&1 \
    || { tail -n 40 "$work/configure.log" >&2; die "cmake configure failed (--keep keeps $work/configure.log)"; }
cmake --build "$work/build" -j"$jobs"
cmake --install "$work/build" >/dev/null
# LWS_WITH_STATIC=OFF still installs a libwebsockets_static.pc naming a .a that isn't there.
rm -f "$prefix/lib/pkgconfig/libwebsockets_static.pc"

# Check what was installed.
pc="$prefix/lib/pkgconfig/libwebsockets.pc"
so="$prefix/lib/libwebsockets.so"
[[ -f "$pc" ]] || die "no $pc"
[[ -e "$so" ]] || die "no $so"
[[ -f "$prefix/include/lws_config.h" ]] || die "no $prefix/include/lws_config.h"
pc_libs=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --libs libwebsockets)
pc_cflags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags libwebsockets)
pc_version=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --modversion libwebsockets)
[[ " $pc_libs " == *" -L$prefix/lib "* ]] || die "libwebsockets.pc Libs lack -L$prefix/lib: $pc_libs"
[[ " $pc_cflags " == *" -I$prefix/include "* ]] || die "libwebsockets.pc Cflags lack -I$prefix/include: $pc_cflags"
[[ "$pc_version" == "${tag#v}" || "$pc_version" == "${tag#v}"-* ]] || echo "lws-build: warning: pc version $pc_version, tag $tag" >&2
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
# -Bsymbolic-functions sets no dynamic flag; it shows as fewer calls through the PLT
# to lws's own exported functions.
plt=$(objdump -d --no-show-raw-insn "$so" | grep -c 'call.*<lws_service_fd_tsi@plt>' || true)
echo "lws-build: installed $so ($soname), lws $pc_version"
echo "lws-build: pkg-config: $pc_cflags $pc_libs"
echo "lws-build: calls to lws_service_fd_tsi@plt inside the library: $plt"
echo
echo "Build moongate against it:"
echo "  PKG_CONFIG_PATH=$prefix/lib/pkgconfig cmake -B build-lws43 -S . && cmake --build build-lws43 -j2"
