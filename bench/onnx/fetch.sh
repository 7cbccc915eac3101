#!/usr/bin/env bash
# Fetches ONNX Runtime's Linux x64 shared library from the onnxruntime-node
# npm package into lib/ (ignored by git). `npm pack` downloads the package
# without running its install scripts. The version matches the C API headers
# of github.com/yalue/onnxruntime_go v1.27.0 (ORT_API_VERSION 24).
set -euo pipefail
cd "$(dirname "$0")"
version=1.24.1
mkdir -p lib
cd lib
if [ ! -f libonnxruntime.so.1 ]; then
	npm pack --silent "onnxruntime-node@$version" >/dev/null
	tar xzf "onnxruntime-node-$version.tgz" --strip-components=5 package/bin/napi-v6/linux/x64/libonnxruntime.so.1
	rm "onnxruntime-node-$version.tgz"
fi
ls -l libonnxruntime.so.1
