#!/usr/bin/env bash
# Builds the stand-alone data tool of data-tool/main.swift from the TandemData and TandemTensor sources
# (release, native CPU; TandemTensor's BLAS wrapper left out) into .build-data/data-tool and prints its path.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .build-data
sources=$(ls Sources/TandemData/*.swift Sources/TandemTensor/*.swift | grep -v -e Exports.swift -e BLAS.swift)
swiftc -O -wmo -target-cpu native -module-name TandemDataTool -o .build-data/data-tool $sources scripts/tokenizer/data-tool/main.swift
echo .build-data/data-tool
