#!/usr/bin/env bash
# Cross-compiles every AArch64 tier (scalar, neon) with the drivers and a native agreement test,
# and runs it under qemu-aarch64: the NEON code is built and checked against the scalar tier on
# an x86 host. Skips (exit 0) where aarch64-linux-gnu-g++ or qemu-aarch64 is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
CXX=${CXX_AARCH64:-aarch64-linux-gnu-g++}
if ! command -v "$CXX" >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  echo "arm64 check skipped: needs $CXX and qemu-aarch64 (apt-get install g++-aarch64-linux-gnu qemu-user)"
  exit 0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common="-std=c++17 -O2 -ffp-contract=off -Icsrc"
families=$(sed -n 's/^set(EMBKERN_FAMILIES \(.*\))/\1/p' CMakeLists.txt)
objs=()
for fam in $families; do
  $CXX $common -march=armv8-a -fno-tree-vectorize -DEMBKERN_ISA_NS=scalar -c csrc/$fam/${fam}_scalar.cpp -o "$out/${fam}_scalar.o"
  $CXX $common -march=armv8-a -DEMBKERN_ISA_NS=neon -c csrc/$fam/${fam}_neon.cpp -o "$out/${fam}_neon.o"
  $CXX $common -DEMBKERN_ISA_NS=baseline -c csrc/$fam/${fam}_driver.cpp -o "$out/${fam}_driver.o"
  objs+=("$out/${fam}_scalar.o" "$out/${fam}_neon.o" "$out/${fam}_driver.o")
done
defs="-DEMBKERN_HAVE_SCALAR=1 -DEMBKERN_HAVE_NEON=1 -DEMBKERN_ISA_NS=baseline"
for f in csrc/common/*.cpp tests/native/tier_agreement.cpp; do
  $CXX $common $defs -c "$f" -o "$out/$(basename "$f" .cpp).o"
  objs+=("$out/$(basename "$f" .cpp).o")
done
$CXX -static -pthread "${objs[@]}" -o "$out/tier_agreement"
qemu-aarch64 "$out/tier_agreement"
