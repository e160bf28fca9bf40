#!/bin/sh
# run.sh — installs a release build of hostmem into a scratch prefix and builds consumers against it: pkg-config (shared) and find_package (shared and static).
# Usage: run.sh <source-dir> <work-dir>. The work dir is deleted and recreated first.
set -u

die() {
    echo "install test: FAILED: $*" >&2
    exit 1
}
step() { echo "install test: $*"; }

[ $# -eq 2 ] || die "usage: $0 <source-dir> <work-dir>"
src=$(cd "$1" 2>/dev/null && pwd) || die "no source dir $1"
[ -f "$src/CMakeLists.txt" ] || die "$src has no CMakeLists.txt"
work=$2
case "$work" in
    "" | / | /. | /.. | "$src" | "$src/") die "refusing to use '$work' as the work dir" ;;
esac
rm -rf "$work" || die "cannot remove $work"
mkdir -p "$work" || die "cannot create $work"
work=$(cd "$work" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
build=$work/build
prefix=$work/prefix
log=$work/log
mkdir -p "$log"

# The inner build is a plain release build: none of the caller's sanitizer or compiler flags.
unset CFLAGS CXXFLAGS CPPFLAGS LDFLAGS LIBS CMAKE_BUILD_TYPE CMAKE_PREFIX_PATH CMAKE_GENERATOR \
    ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS LSAN_OPTIONS MSAN_OPTIONS LD_PRELOAD LD_LIBRARY_PATH \
    PKG_CONFIG_PATH PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR HOSTMEM_OPTIONS
jobs=$(nproc 2>/dev/null || echo 2)

# run <log name> <command...>: runs it with output to a log; on failure shows the log and stops.
run() {
    name=$1
    shift
    if ! "$@" >"$log/$name.log" 2>&1; then
        cat "$log/$name.log" >&2
        die "$name: '$*' failed (log: $log/$name.log)"
    fi
}

step "configure $src -> $build (Release, prefix $prefix)"
run configure cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DHM_SANITIZE= -DHM_BUILD_TESTS=OFF \
    -DHM_BUILD_BENCH=OFF "-DCMAKE_INSTALL_PREFIX=$prefix"
step "build"
run build cmake --build "$build" -j "$jobs"
step "install"
run install cmake --install "$build"

# ---- the installed layout ----------------------------------------------------------------------
libdir=
for d in "$prefix"/lib "$prefix"/lib64 "$prefix"/lib/*-linux-gnu*; do
    if [ -f "$d/pkgconfig/hostmem.pc" ]; then
        libdir=$d
        break
    fi
done
[ -n "$libdir" ] || die "no hostmem.pc under $prefix/lib*/pkgconfig (installed: $(cd "$prefix" && find . -type f | tr '\n' ' '))"
step "libdir $libdir"
for f in include/hostmem/hostmem.h include/hostmem/win32.h bin/hostmem; do
    [ -f "$prefix/$f" ] || die "$prefix/$f is not installed"
done
for f in libhostmem.so libhostmem.a hostmemConfig.cmake hostmemConfigVersion.cmake hostmemTargets.cmake; do
    case $f in
        *.cmake) p=$libdir/cmake/hostmem/$f ;;
        *) p=$libdir/$f ;;
    esac
    [ -e "$p" ] || die "$p is not installed"
done
soname=$(readelf -d "$libdir/libhostmem.so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ -n "$soname" ] || die "libhostmem.so has no SONAME"
[ -e "$libdir/$soname" ] || die "$libdir/$soname (the SONAME) is not installed"
ls "$prefix"/include/hostmem | grep -v '\.h$' >/dev/null && die "non-header files installed in include/hostmem"
# The adapters where their runtimes are: the library, and `hostmem host` finding its helper in libexec/hostmem.
for rt in lua:lua5.4:lua sqlite:sqlite3:sql python:python3-embed:py; do
    name=${rt%%:*} pc=${rt#*:} ext=${pc#*:} pc=${pc%%:*}
    pkg-config --exists "$pc" 2>/dev/null || continue
    [ -f "$libdir/libhostmem_$name.a" ] || die "libhostmem_$name.a is not installed"
    [ -x "$prefix/libexec/hostmem/hostmem-host-$name" ] || die "libexec/hostmem/hostmem-host-$name is not installed"
    if [ $name = sqlite ]; then echo "SELECT 6 * 7;" >"$work/t.$ext"; else echo "print(6 * 7)" >"$work/t.$ext"; fi
    out=$(HOSTMEM_HOST_DIR= "$prefix/bin/hostmem" host $name "$work/t.$ext" 2>"$log/host-$name.log") || die "hostmem host $name: status $?"
    [ "$out" = 42 ] || die "hostmem host $name printed '$out', not 42"
    step "hostmem host $name (installed helper)"
done
if readelf -d "$libdir/libhostmem.so" | grep -q 'R.*PATH'; then
    die "the installed libhostmem.so still carries a build-tree RPATH/RUNPATH"
fi

# Every HM_API name of the public headers is exported by the shared library.
syms=$(nm -D --defined-only "$libdir/libhostmem.so" | awk '{print $3}')
api=$(sed -n 's/^HM_API[^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' "$prefix"/include/hostmem/*.h | sort -u)
[ -n "$api" ] || die "found no HM_API declarations in the installed headers"
missing=
for s in $api; do
    echo "$syms" | grep -qx "$s" || missing="$missing $s"
done
[ -z "$missing" ] || die "libhostmem.so does not export:$missing"
extra=
for s in $syms; do
    case $s in _init | _fini | _edata | _end | __bss_start) continue ;; esac
    echo "$api" | grep -qx "$s" || extra="$extra $s"
done
[ -z "$extra" ] || echo "install test: note: libhostmem.so also exports:$extra"

# ---- (a) pkg-config, shared library ----------------------------------------------------------------
export PKG_CONFIG_PATH="$libdir/pkgconfig"
pc_prefix=$(pkg-config --variable=prefix hostmem) || die "pkg-config does not find hostmem in $PKG_CONFIG_PATH"
[ "$pc_prefix" = "$prefix" ] || die "hostmem.pc says prefix=$pc_prefix, installed under $prefix"
flags=$(pkg-config --cflags --libs hostmem) || die "pkg-config --cflags --libs hostmem failed"
step "pkg-config: $flags"
cc=${CC:-cc}
run pkgconfig-compile $cc -std=c11 -Wall -Wextra -Werror -o "$work/consumer_pc" "$here/consumer/consumer.c" $flags
LD_LIBRARY_PATH=$libdir ldd "$work/consumer_pc" >"$log/ldd.log" 2>&1
grep -q "$libdir/libhostmem.so" "$log/ldd.log" || { cat "$log/ldd.log" >&2; die "consumer_pc does not load $libdir/libhostmem.so"; }
step "run consumer (pkg-config, shared)"
LD_LIBRARY_PATH=$libdir "$work/consumer_pc" || die "the pkg-config consumer failed"
unset PKG_CONFIG_PATH

# ---- (b) find_package, shared and static ---------------------------------------------------------
step "find_package consumer"
run consumer-configure cmake -S "$here/consumer" -B "$work/consumer" -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_PREFIX_PATH=$prefix" "-DEXPECT_PREFIX=$prefix"
run consumer-build cmake --build "$work/consumer" -j "$jobs"
shared=$work/consumer/consumer_shared
static=$work/consumer/consumer_static
[ -x "$shared" ] && [ -x "$static" ] || die "the find_package consumers were not built"
ldd "$shared" >"$log/ldd-shared.log" 2>&1
grep -q "$libdir/libhostmem.so" "$log/ldd-shared.log" || { cat "$log/ldd-shared.log" >&2; die "consumer_shared does not load $libdir/libhostmem.so"; }
ldd "$static" >"$log/ldd-static.log" 2>&1
grep -q libhostmem "$log/ldd-static.log" && { cat "$log/ldd-static.log" >&2; die "consumer_static depends on libhostmem.so"; }
step "run consumer (find_package, hostmem::hostmem)"
"$shared" || die "consumer_shared failed"
step "run consumer (find_package, hostmem::hostmem_static)"
"$static" || die "consumer_static failed"

step "passed"
exit 0
