package main

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/gallop-dev/gallop/infer"
)

// ONNX export of a gallop MLP, hand-encoded as protobuf (onnx.proto3 field
// numbers): ModelProto{ir_version 8, opset 13, graph}, the graph
//
//	x [1, W·F] → Sub(mean) → Mul(1/std) → MatMul(w0) → Add(b0) → Relu → … → MatMul → Add → logits [1, C]
//
// with the weights as float initializers in raw little-endian form. The
// normalisation is tiled over the window, and multiplies by 1/std computed in
// float32 as infer.NewMLP does, so both engines see the same inputs.

// pb is a protobuf message being encoded.
type pb []byte

func (m pb) tag(field, wire int) pb { return binary.AppendUvarint(m, uint64(field<<3|wire)) }

func (m pb) varint(field int, v uint64) pb { return binary.AppendUvarint(m.tag(field, 0), v) }

func (m pb) bytes(field int, b []byte) pb {
	m = binary.AppendUvarint(m.tag(field, 2), uint64(len(b)))
	return append(m, b...)
}

func (m pb) str(field int, s string) pb { return m.bytes(field, []byte(s)) }

const (
	onnxFloat = 1 // TensorProto.DataType FLOAT
)

func tensorProto(name string, dims []int, data []float32) []byte {
	var t pb
	for _, d := range dims {
		t = t.varint(1, uint64(d)) // dims
	}
	t = t.varint(2, onnxFloat) // data_type
	t = t.str(8, name)         // name
	raw := make([]byte, 0, 4*len(data))
	for _, v := range data {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	return t.bytes(9, raw) // raw_data
}

func valueInfo(name string, dims ...int) []byte {
	var shape pb
	for _, d := range dims {
		shape = shape.bytes(1, pb(nil).varint(1, uint64(d))) // dim { dim_value }
	}
	tensor := pb(nil).varint(1, onnxFloat).bytes(2, shape) // elem_type, shape
	typ := pb(nil).bytes(1, tensor)                        // tensor_type
	return pb(nil).str(1, name).bytes(2, typ)
}

func node(op, name string, out string, in ...string) []byte {
	var n pb
	for _, s := range in {
		n = n.str(1, s)
	}
	return n.str(2, out).str(3, name).str(4, op)
}

// onnxModel encodes m as an ONNX model with input "x" [1, W·F] and output
// "logits" [1, C].
func onnxModel(m *infer.Model) []byte {
	f, w := len(m.Features), m.Window
	mean := make([]float32, 0, w*f)
	inv := make([]float32, 0, w*f)
	for range w {
		mean = append(mean, m.Mean...)
		for _, s := range m.Std {
			inv = append(inv, 1/s)
		}
	}
	var g pb
	g = g.bytes(1, node("Sub", "norm_sub", "xc", "x", "norm.mean"))
	g = g.bytes(1, node("Mul", "norm_mul", "xn", "xc", "norm.inv_std"))
	h := "xn"
	for l := range m.W {
		s := strconv.Itoa(l)
		mm, add := "mm"+s, "dense"+s
		out := add
		if l == len(m.W)-1 {
			out = "logits"
		}
		g = g.bytes(1, node("MatMul", "matmul"+s, mm, h, "dense"+s+".w"))
		g = g.bytes(1, node("Add", "add"+s, out, mm, "dense"+s+".b"))
		h = out
		if l < len(m.W)-1 {
			g = g.bytes(1, node("Relu", "relu"+s, "relu"+s, out))
			h = "relu" + s
		}
	}
	g = g.str(2, "gallop_mlp")
	g = g.bytes(5, tensorProto("norm.mean", []int{w * f}, mean))
	g = g.bytes(5, tensorProto("norm.inv_std", []int{w * f}, inv))
	for l := range m.W {
		s := strconv.Itoa(l)
		g = g.bytes(5, tensorProto("dense"+s+".w", []int{m.Layers[l], m.Layers[l+1]}, m.W[l]))
		g = g.bytes(5, tensorProto("dense"+s+".b", []int{m.Layers[l+1]}, m.B[l]))
	}
	g = g.bytes(11, valueInfo("x", 1, w*f))
	g = g.bytes(12, valueInfo("logits", 1, m.Layers[len(m.Layers)-1]))

	var mp pb
	mp = mp.varint(1, 8) // ir_version
	mp = mp.str(2, "gallop")
	mp = mp.bytes(7, g)
	mp = mp.bytes(8, pb(nil).str(1, "").varint(2, 13)) // opset_import { domain "", version 13 }
	return mp
}
