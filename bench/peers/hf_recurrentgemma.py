"""PyTorch / HF transformers peer of `griffin bench` and `bench/generate.ts`: the same model shape with
random weights, measured the same way, for ratios taken in one lease on one GPU.

    python3 bench/peers/hf_recurrentgemma.py --config 2b --prefill 128,2048 --batches 1,8 --out hf.json
    python3 bench/peers/hf_recurrentgemma.py --config 2b --dtype bfloat16 --prefill 128 --batches 1,8

Prefill: one forward over a [1, t] prompt, median of --reps after a warm-up (logits of every position,
as HF's forward computes them). Decode: `model.generate` greedy from a --prompt-len prompt for
--new-tokens tokens; steady tokens/s are taken between the first and the last token (a streamer
stamps each token), so the prompt's prefill is not counted, as in bench/generate.ts.
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import RecurrentGemmaConfig, RecurrentGemmaForCausalLM
from transformers.generation.streamers import BaseStreamer

CONFIGS = {
    # RecurrentGemma-2B as released (src/bench/common.ts CONFIGS['2b']).
    "2b": dict(num_hidden_layers=26, vocab_size=256000, hidden_size=2560, lru_width=2560, intermediate_size=15360,
               num_attention_heads=10, num_key_value_heads=1, attention_window_size=2048, conv1d_width=4,
               block_types=["recurrent", "recurrent", "attention"]),
    # RecurrentGemma-9B as released (src/bench/common.ts CONFIGS['9b']).
    "9b": dict(num_hidden_layers=38, vocab_size=256000, hidden_size=4096, lru_width=4096, intermediate_size=24576,
               num_attention_heads=16, num_key_value_heads=1, attention_window_size=2048, conv1d_width=4,
               block_types=["recurrent", "recurrent", "attention"]),
    "tiny": dict(num_hidden_layers=4, vocab_size=512, hidden_size=64, lru_width=64, intermediate_size=192,
                 num_attention_heads=4, num_key_value_heads=1, attention_window_size=64,
                 block_types=["recurrent", "recurrent", "attention"]),
}


class Stamps(BaseStreamer):
    """Records the time of every put() after the prompt's."""

    def __init__(self):
        self.times = []
        self.first = True

    def put(self, value):
        if self.first:  # generate() puts the prompt first
            self.first = False
            return
        torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def end(self):
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="2b", choices=sorted(CONFIGS))
    p.add_argument("--prefill", default="128,2048")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--out")
    a = p.parse_args()
    torch.manual_seed(0)
    cfg = RecurrentGemmaConfig(**CONFIGS[a.config])
    dtype = getattr(torch, a.dtype)
    model = RecurrentGemmaForCausalLM(cfg).to("cuda", dtype).eval()
    V = cfg.vocab_size
    result = {"peer": "pytorch-hf", "config": a.config, "torch": torch.__version__,
              "transformers": transformers.__version__, "gpu": torch.cuda.get_device_name(0),
              "dtype": a.dtype, "params": sum(x.numel() for x in model.parameters()), "prefill": [], "decode": []}
    with torch.no_grad():
        for t in [int(x) for x in a.prefill.split(",")]:
            ids = torch.randint(3, V, (1, t), device="cuda")
            model(ids)
            torch.cuda.synchronize()
            times = []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                model(ids)
                torch.cuda.synchronize()
                times.append((time.perf_counter() - t0) * 1000)
            result["prefill"].append({"t": t, "ms": round(statistics.median(times), 1)})
            print(json.dumps(result["prefill"][-1]), flush=True)
        for b in [int(x) for x in a.batches.split(",")]:
            ids = torch.randint(3, V, (b, a.prompt_len), device="cuda")
            model.generate(ids, max_new_tokens=4, do_sample=False, min_new_tokens=4)  # warm-up
            s = Stamps()
            model.generate(ids, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False, streamer=s)
            steps = len(s.times) - 1
            ms = (s.times[-1] - s.times[0]) * 1000
            result["decode"].append({"batch": b, "steps": steps, "msPerStep": round(ms / steps, 3),
                                     "tokensPerSec": round(steps * b / ms * 1000, 1)})
            print(json.dumps(result["decode"][-1]), flush=True)
    text = json.dumps(result, indent=2)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
