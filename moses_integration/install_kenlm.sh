#!/usr/bin/env bash
# Build KenLM's lmplz, build_binary and query from the kenlm source package on PyPI
# (cmake, Debian's Boost dev packages) and install them into a bin directory; install the
# package's C++ headers (lm/, util/) into VENV/include/kenlm, for moses_integration/kenlm_core.
# Skipped when they are already there.  Usage: install_kenlm.sh VENV_DIR
set -euo pipefail
VENV=${1:-.venv}
BIN="$VENV/bin"
INCLUDE="$(cd "$VENV" && pwd)/include/kenlm"
VERSION=0.3.0
programs=yes
if [ -x "$BIN/lmplz" ] && [ -x "$BIN/build_binary" ] && [ -x "$BIN/query" ]; then
  programs=
  [ -f "$INCLUDE/lm/model.hh" ] && exit 0
fi
download() {
  "$BIN/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: --no-build-isolation \
    "kenlm==$VERSION" -d "$work" 2>&1 | grep -v "^WARNING: Location" || true
  tar xzf "$work/kenlm-$VERSION.tar.gz" -C "$work"
  rm -rf "$INCLUDE" && mkdir -p "$INCLUDE"
  (cd "$work/kenlm-$VERSION" && find lm util -name '*.hh' -exec cp --parents {} "$INCLUDE/" \;)
}
if [ -z "$programs" ]; then  # the programs are there: the headers only
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  download
  echo "install_kenlm: KenLM's headers installed into $INCLUDE"
  exit 0
fi
need=()
for pkg in cmake libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev \
           zlib1g-dev libbz2-dev liblzma-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "install_kenlm: installing Debian packages: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "install_kenlm: building lmplz, build_binary, query from kenlm $VERSION (about 2 minutes)"
download
cmake -S "$work/kenlm-$VERSION" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=7 >"$work/cmake.log" 2>&1 \
  || { cat "$work/cmake.log"; exit 1; }
make -C "$work/build" -j"$(nproc)" lmplz build_binary query >"$work/make.log" 2>&1 || { tail -40 "$work/make.log"; exit 1; }
install -m 755 "$work/build/bin/lmplz" "$work/build/bin/build_binary" "$work/build/bin/query" "$BIN/"
echo "install_kenlm: installed into $BIN, headers into $INCLUDE"
