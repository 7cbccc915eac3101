//go:build amd64

#include "textflag.h"

// Int8 kernels for AVX-512 (F, BW, VNNI). See int8.go for the layouts and
// int8_amd64.go for the Go declarations.

// func vnniGemv(acc *int32, x *byte, w *byte, groups, tiles int)
//
// For each of tiles 64-column tiles: acc[0:64] = Σ_g Σ_k x[4g+k]·w[...],
// the unsigned bytes of x against the signed bytes of the packed tile, two
// groups of 4 inputs per iteration into two sets of four accumulators.
// groups must be even and > 0.
TEXT ·vnniGemv(SB), NOSPLIT, $0-40
	MOVQ acc+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ groups+24(FP), CX
	MOVQ tiles+32(FP), R8

tile:
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	MOVQ SI, R9
	MOVQ CX, R10

group:
	VPBROADCASTD (R9), Z16
	VPBROADCASTD 4(R9), Z17
	VPDPBUSD (DX), Z16, Z0
	VPDPBUSD 64(DX), Z16, Z1
	VPDPBUSD 128(DX), Z16, Z2
	VPDPBUSD 192(DX), Z16, Z3
	VPDPBUSD 256(DX), Z17, Z4
	VPDPBUSD 320(DX), Z17, Z5
	VPDPBUSD 384(DX), Z17, Z6
	VPDPBUSD 448(DX), Z17, Z7
	ADDQ $8, R9
	ADDQ $512, DX
	SUBQ $2, R10
	JNZ  group

	VPADDD Z4, Z0, Z0
	VPADDD Z5, Z1, Z1
	VPADDD Z6, Z2, Z2
	VPADDD Z7, Z3, Z3
	VMOVDQU32 Z0, (DI)
	VMOVDQU32 Z1, 64(DI)
	VMOVDQU32 Z2, 128(DI)
	VMOVDQU32 Z3, 192(DI)
	ADDQ $256, DI
	DECQ R8
	JNZ  tile
	VZEROUPPER
	RET

// func maxMask16(src *float32, n int, mask uint32) float32
//
// Returns max(0, src[0]&mask, ..., src[n-1]&mask) with the floats' bits
// and-ed with mask (all ones: max(0, x...); 0x7fffffff: max |x|), or NaN
// if src holds a NaN (a sum of the inputs rides along to catch it:
// VMAXPS drops NaNs); n must be a multiple of 16.
TEXT ·maxMask16(SB), NOSPLIT, $0-28
	MOVQ src+0(FP), SI
	MOVQ n+8(FP), CX
	MOVL mask+16(FP), AX
	VPBROADCASTD AX, Z4
	VPXORD Z0, Z0, Z0
	VPXORD Z3, Z3, Z3
	SHRQ $4, CX
	JZ   reduce

loop:
	VMOVUPS (SI), Z1
	VADDPS Z1, Z3, Z3
	VPANDD Z4, Z1, Z1
	VMAXPS Z1, Z0, Z0
	ADDQ $64, SI
	DECQ CX
	JNZ  loop

reduce:
	VCMPPS $3, Z3, Z3, K1
	KORTESTW K1, K1
	JNZ  nan
	VEXTRACTF32X8 $1, Z0, Y1
	VMAXPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMAXPS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

nan:
	VZEROUPPER
	MOVL $0x7fc00000, AX
	MOVL AX, ret+24(FP)
	RET

// func quantReLU16(dst *byte, src *float32, n int, scale float32)
//
// dst[i] = round(max(src[i], 0) * scale) saturated to [0, 255], rounding
// to nearest even; n must be a multiple of 16.
TEXT ·quantReLU16(SB), NOSPLIT, $0-28
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS scale+24(FP), Z1
	VPXORD Z2, Z2, Z2
	SHRQ $4, CX
	JZ   done

loop:
	VMAXPS (SI), Z2, Z0
	VMULPS Z1, Z0, Z0
	VCVTPS2DQ Z0, Z0
	VPMOVUSDB Z0, (DI)
	ADDQ $64, SI
	ADDQ $16, DI
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

// func quantOff16(dst *byte, src *float32, n int, scale float32)
//
// dst[i] = round(src[i] * scale) + 128, rounding to nearest even, for
// |src[i] * scale| <= 127; n must be a multiple of 16.
TEXT ·quantOff16(SB), NOSPLIT, $0-28
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS scale+24(FP), Z1
	MOVL $128, AX
	VPBROADCASTD AX, Z2
	SHRQ $4, CX
	JZ   done

loop:
	VMULPS (SI), Z1, Z0
	VCVTPS2DQ Z0, Z0
	VPADDD Z2, Z0, Z0
	VPMOVUSDB Z0, (DI)
	ADDQ $64, SI
	ADDQ $16, DI
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

// func dequantAdd16(y *float32, acc, corr *int32, scale *float32, n int, sx float32)
//
// y[j] += float32(acc[j] - corr[j]) * scale[j] * sx; n must be a multiple
// of 16.
TEXT ·dequantAdd16(SB), NOSPLIT, $0-44
	MOVQ y+0(FP), DI
	MOVQ acc+8(FP), SI
	MOVQ corr+16(FP), BX
	MOVQ scale+24(FP), DX
	MOVQ n+32(FP), CX
	VBROADCASTSS sx+40(FP), Z2
	SHRQ $4, CX
	JZ   done

loop:
	VMOVDQU32 (SI), Z0
	VPSUBD (BX), Z0, Z0
	VCVTDQ2PS Z0, Z0
	VMULPS (DX), Z0, Z0
	VMOVUPS (DI), Z3
	VFMADD213PS Z3, Z2, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, BX
	ADDQ $64, DX
	ADDQ $64, DI
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET
