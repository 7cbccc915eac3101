"""Compare the training loss curves of gallop runs step by step.

    python3 bench/gpu/losscmp.py RUNS_A RUNS_B [RUNS_C ...]

Each argument is a --runs-dir holding one run; every run after the first is
compared with the first over the steps both logged (metrics.jsonl).
"""
import glob, json, sys


def losses(runs_dir):
    out = {}
    for line in open(glob.glob(runs_dir + "/*/metrics.jsonl")[0]):
        m = json.loads(line)
        if m.get("split") == "train":
            out[m["step"]] = m["loss"]
    return out


a = losses(sys.argv[1])
for other in sys.argv[2:]:
    b = losses(other)
    d = [abs(a[k] - b[k]) for k in sorted(a) if k in b]
    print(f"  loss {sys.argv[1].split('/')[-1]} vs {other.split('/')[-1]}: {len(d)} logged steps, "
          f"first Δ {d[0]:.3g}, mean |Δ| {sum(d)/len(d):.3g}, max |Δ| {max(d):.3g}")
