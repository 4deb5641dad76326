#!/usr/bin/env bash
# Builds the stand-alone tokenizer of swift-tokenize/main.swift from the TandemData sources (release, native CPU)
# into .build-data/swift-tokenize and prints its path.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .build-data
sources=$(ls Sources/TandemData/*.swift | grep -v Exports.swift)
swiftc -O -target-cpu native -module-name TandemDataTool -o .build-data/swift-tokenize $sources scripts/tokenizer/swift-tokenize/main.swift
echo .build-data/swift-tokenize
