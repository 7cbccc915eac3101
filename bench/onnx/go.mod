module github.com/gallop-dev/gallop/bench/onnx

go 1.26.8

replace github.com/gallop-dev/gallop => ../..

require (
	github.com/gallop-dev/gallop v0.0.0-00010101000000-000000000000
	github.com/gomlx/compute v0.1.2
	github.com/gomlx/gomlx v0.28.2
	github.com/yalue/onnxruntime_go v1.27.0
)

require (
	github.com/go-logr/logr v1.4.3 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	golang.org/x/exp v0.0.0-20260410095643-746e56fc9e2f // indirect
	golang.org/x/sys v0.47.0 // indirect
	k8s.io/klog/v2 v2.140.0 // indirect
)
