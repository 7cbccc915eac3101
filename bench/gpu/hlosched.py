"""Print the schedule of an XLA GPU module's entry computation, compressed:
where the collectives start and finish relative to the matmuls, i.e. what
XLA overlaps with the backward pass.

    python3 bench/gpu/hlosched.py DUMP_DIR [NAME_REGEX]

DUMP_DIR is an XLA_FLAGS=--xla_dump_to dump (with --xla_dump_hlo_as_text);
the *after_optimizations.txt module whose name matches NAME_REGEX (default
train_step) is read.
"""
import glob, re, sys

DT = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "pred": 1, "f64": 8}


def nbytes(shape):
    total = 0
    for dt, dims in re.findall(r"(f32|bf16|f16|s32|pred|f64)\[([0-9,]*)\]", shape):
        n = 1
        for d in filter(None, dims.split(",")):
            n *= int(d)
        total += n * DT[dt]
    return total


def main():
    pat = re.compile(sys.argv[2] if len(sys.argv) > 2 else "train_step")
    files = sorted(f for f in glob.glob(sys.argv[1] + "/*after_optimizations.txt") if pat.search(f))
    if not files:
        print("no module matches in", sys.argv[1])
        return
    for f in files[-1:]:
        print("module", f.split("/")[-1])
        lines = open(f).read().split("\n")
        start = next(i for i, l in enumerate(lines) if l.startswith("ENTRY"))
        seq = []
        for l in lines[start + 1:]:
            if l.startswith("}"):
                break
            m = re.match(r"\s*(?:ROOT )?%?[\w.\-]+ = (.*?) ([\w\-]+)\(", l)
            if not m:
                continue
            shape, op = m.group(1), m.group(2)
            if op in ("parameter", "constant", "get-tuple-element", "tuple", "bitcast", "copy-start", "copy-done"):
                continue
            if "all-reduce" in op or "all-gather" in op or "reduce-scatter" in op:
                seq.append(f"{op}[{nbytes(shape)/1e6:.1f}MB]" if "done" not in op else op)
            elif op == "custom-call" and "gemm" in l:
                seq.append("gemm")
            elif op == "fusion":
                seq.append("gemm" if "gemm" in l else "fusion")
            elif op in ("call", "async-start", "async-done", "custom-call"):
                # command buffers (CUDA graphs) and async wrappers: name what they call
                to = re.search(r"(?:to_apply|calls)=%?([\w.\-]+)", l)
                tgt = re.search(r'custom_call_target="([^"]+)"', l)
                seq.append(f"{op}:{(to or tgt).group(1) if (to or tgt) else '?'}")
            else:
                seq.append(op)
        # Collectives anywhere in the module (inside command buffers or
        # async computations too), in text order.
        coll = [re.sub(r"\s+", " ", l.strip())[:120] for l in lines if re.search(r"= .*(all-reduce|all-gather|reduce-scatter)[\w\-]*\(", l)]
        print(f"  {len(coll)} collective instructions in the module; first ones:")
        for c in coll[:6]:
            print("    " + c)
        out, prev, n = [], None, 0
        for s in seq + [None]:
            if s == prev:
                n += 1
                continue
            if prev is not None:
                out.append(prev if n == 1 else f"{prev}×{n}")
            prev, n = s, 1
        print("  " + " ".join(out))


main()
