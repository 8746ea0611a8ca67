"""Reads a bench/prefill_matmul.ts sweep JSON and prints, as GRIFFIN_PREFILL_MM text, the tuning with the least
summed ms over the swept shapes at the given M (the H200 session script uses it to run prefill with the winner).
    python3 bench/results/pick_matmul.py sweep.json 2048
"""
import json
import sys

rows = [r for r in json.load(open(sys.argv[1]))["rows"] if r["M"] == int(sys.argv[2]) and r.get("ms")]
total, full, count = {}, {}, {}
for r in rows:
    k = json.dumps(r["tuningFull"], sort_keys=True)
    total[k] = total.get(k, 0) + r["ms"]
    count[k] = count.get(k, 0) + 1
    full[k] = r["tuningFull"]
most = max(count.values())
best = min((k for k in total if count[k] == most), key=lambda k: total[k])
print(",".join(f"{a}={int(v) if isinstance(v, bool) else v}" for a, v in full[best].items()))
